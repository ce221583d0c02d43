package admin

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime reads a time as an operator gives it in a filter: RFC 3339,
// 2006-01-02T15:04 or a date (UTC unless the text says otherwise), or a
// duration ago (Go's, or whole days: 2d). "" is the zero time.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q is a negative age: give how long ago, like 36h or 2d", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a time (2025-06-01T08:00:00Z, 2025-06-01) nor a duration ago (36h, 2d)", s)
}

// ParseDuration reads a Go duration or whole days ("30d").
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	return time.ParseDuration(s)
}

// ParseUntil reads when something ends, as an operator gives it: a time
// (as ParseTime), or a positive duration from now (30m, 2h, 1d). "" is the
// zero time (no end).
func ParseUntil(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%q: give a positive duration from now", s)
		}
		return now.Add(d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a time (2025-06-01T11:00:00Z, 2025-06-01) nor a duration from now (30m, 2h, 1d)", s)
}
