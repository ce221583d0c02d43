package ui

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/retrigger/retrigger/admin"
)

// chart is the overview's SVG chart of successes, failures and archives
// per minute, drawn on the server: three lines over a grid, and one
// transparent column per minute whose title tells its figures on hover.
type chart struct {
	Width, Height int
	Left, Top     int // the plot's origin
	PlotW, PlotH  int
	Series        []series
	YTicks        []tick
	XTicks        []tick
	Columns       []column
	Max           int64
	Empty         bool
	Caption       string
}

type series struct {
	Name   string
	Class  string
	Points string
	Total  int64
}

type tick struct {
	Pos   int
	Label string
}

type column struct {
	X, W  int
	Title string
}

// Chart geometry, in SVG units (the SVG scales to its box).
const (
	chartW     = 720
	chartH     = 220
	chartLeft  = 44
	chartRight = 12
	chartTop   = 12
	chartBelow = 28
)

func newChart(a *admin.Activity) chart {
	c := chart{Width: chartW, Height: chartH, Left: chartLeft, Top: chartTop,
		PlotW: chartW - chartLeft - chartRight, PlotH: chartH - chartTop - chartBelow}
	n := len(a.Buckets)
	if n == 0 {
		c.Empty = true
		return c
	}
	for _, b := range a.Buckets {
		c.Max = max(c.Max, b.Succeeded, b.Failed, b.Archived)
	}
	top := niceCeil(c.Max)
	x := func(i int) float64 {
		if n == 1 {
			return float64(c.Left)
		}
		return float64(c.Left) + float64(i)*float64(c.PlotW)/float64(n-1)
	}
	y := func(v int64) float64 {
		return float64(c.Top+c.PlotH) - float64(v)*float64(c.PlotH)/float64(top)
	}
	for _, s := range []struct {
		name, class string
		get         func(i int) int64
	}{
		{"succeeded", "s-succeeded", func(i int) int64 { return a.Buckets[i].Succeeded }},
		{"failed", "s-failed", func(i int) int64 { return a.Buckets[i].Failed }},
		{"archived into errors", "s-archived", func(i int) int64 { return a.Buckets[i].Archived }},
	} {
		var pts strings.Builder
		var total int64
		for i := range n {
			v := s.get(i)
			total += v
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(i), y(v))
		}
		c.Series = append(c.Series, series{Name: s.name, Class: s.class, Points: strings.TrimSpace(pts.String()), Total: total})
	}
	for i := range 5 {
		v := top * int64(i) / 4
		c.YTicks = append(c.YTicks, tick{Pos: int(y(v)), Label: strconv.FormatInt(v, 10)})
	}
	every := max(n/6, 1)
	for i := 0; i < n; i += every {
		c.XTicks = append(c.XTicks, tick{Pos: int(x(i)), Label: a.Buckets[i].Start.UTC().Format("15:04")})
	}
	w := float64(c.PlotW) / float64(max(n-1, 1))
	for i, b := range a.Buckets {
		c.Columns = append(c.Columns, column{X: int(x(i) - w/2), W: int(w + 0.5),
			Title: fmt.Sprintf("%s UTC: %d succeeded, %d failed, %d archived", b.Start.UTC().Format("15:04"), b.Succeeded, b.Failed, b.Archived)})
	}
	c.Caption = fmt.Sprintf("%s, %s to %s UTC", per(a.Step), a.From.UTC().Format("15:04"), a.From.Add(time.Duration(n)*a.Step).UTC().Format("15:04"))
	return c
}

// per says "per minute" for a step of a minute, and "per 90s" for others.
func per(step time.Duration) string {
	switch step {
	case time.Second:
		return "per second"
	case time.Minute:
		return "per minute"
	case time.Hour:
		return "per hour"
	}
	return "per " + durationText(step)
}

// durationText is d without the zero units that time.Duration's String
// writes: 2m, not 2m0s; 2h, not 2h0m0s.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 4,
// so that the axis has whole ticks).
func niceCeil(v int64) int64 {
	if v <= 4 {
		return 4
	}
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p*4 >= v {
				return m * p * 4
			}
		}
	}
}
