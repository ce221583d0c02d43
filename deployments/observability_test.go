package deployments

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metricsql"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

	"github.com/retrigger/retrigger/shared/metrics"
)

// retriggerMetrics are the metrics the commands export, read from the one
// package that defines them (shared/metrics): name -> type (counter, gauge,
// histogram). A histogram also has _bucket, _sum, _count.
var retriggerMetrics = func() map[string]string {
	out := map[string]string{}
	for _, d := range metrics.New("test").Definitions() {
		out[d.Name] = d.Type
	}
	return out
}()

// otherMetrics are the metrics of other exporters the alerts and the
// dashboard use: the NATS chart's exporter and kube-state-metrics.
var otherMetrics = map[string]bool{
	"jetstream_consumer_num_pending":        true,
	"jetstream_consumer_num_ack_pending":    true,
	"kube_deployment_status_replicas_ready": true,
}

// metricBase maps a series name to its retrigger metric (histogram series
// to their histogram), or "" if it is none.
func metricBase(name string) string {
	if _, ok := retriggerMetrics[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && retriggerMetrics[base] == "histogram" {
			return base
		}
	}
	return ""
}

// grafanaVar matches the Grafana variables of a dashboard query.
var grafanaVar = regexp.MustCompile(`\$\{?(__rate_interval|__interval|__range|[A-Za-z_][A-Za-z0-9_]*)\}?`)

// parseQuery parses a PromQL query with MetricsQL's parser (a superset of
// PromQL: it catches syntax errors, not every PromQL-only rule) and
// returns the metric names it reads. Grafana variables are replaced first.
func parseQuery(q string) ([]string, error) {
	q = grafanaVar.ReplaceAllStringFunc(q, func(v string) string {
		if strings.Contains(v, "__") {
			return "5m"
		}
		return "x"
	})
	e, err := metricsql.Parse(q)
	if err != nil {
		return nil, err
	}
	var names []string
	metricsql.VisitAll(e, func(e metricsql.Expr) {
		if me, ok := e.(*metricsql.MetricExpr); ok {
			for _, lfs := range me.LabelFilterss {
				for _, lf := range lfs {
					if lf.Label == "__name__" {
						names = append(names, lf.Value)
					}
				}
			}
		}
	})
	return names, nil
}

// checkQuery parses a query and checks its metric names, recording the
// retrigger metrics it uses.
func checkQuery(t *testing.T, where, q string, used map[string]bool) {
	t.Helper()
	names, err := parseQuery(q)
	if err != nil {
		t.Errorf("%s: %v\n%s", where, err, q)
		return
	}
	if len(names) == 0 {
		t.Errorf("%s: reads no metric: %s", where, q)
	}
	for _, n := range names {
		if base := metricBase(n); base != "" {
			used[base] = true
		} else if !otherMetrics[n] {
			t.Errorf("%s: unknown metric %s", where, n)
		}
	}
}

// TestPrometheusRules: the alerts parse, read known metrics, carry a
// severity and a summary, and cover what the issue asks for.
func TestPrometheusRules(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(kubeDir, "components", "monitoring", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests("prometheusrule.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	rules := find[*monitoringv1.PrometheusRule](objs)["retrigger"]
	if rules == nil {
		t.Fatal("no PrometheusRule retrigger")
	}
	used := map[string]bool{}
	alerts := map[string]string{}
	for _, g := range rules.Spec.Groups {
		for _, r := range g.Rules {
			where := g.Name + "/" + r.Alert
			if r.Alert == "" {
				t.Errorf("%s: a recording rule %q (only alerts expected)", g.Name, r.Record)
				continue
			}
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("alert %s twice", r.Alert)
			}
			alerts[r.Alert] = r.Expr.String()
			checkQuery(t, where, r.Expr.String(), used)
			if r.For != nil {
				if _, err := time.ParseDuration(string(*r.For)); err != nil {
					t.Errorf("%s: for %q: %v", where, *r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: no summary or description", where)
			}
		}
	}
	// What the issue asks the alerts to cover, by the metric each reads.
	for what, metric := range map[string]string{
		"failure rate by type": "retrigger_events_handled_total",
		"dead letters growing": "retrigger_archived_total",
		"checkpoint age":       "retrigger_checkpoint_age_seconds",
		"consumer lag":         "jetstream_consumer_num_pending",
		"no ready producer":    "kube_deployment_status_replicas_ready",
	} {
		found := false
		for _, expr := range alerts {
			found = found || strings.Contains(expr, metric)
		}
		if !found {
			t.Errorf("no alert on %s (%s)", what, metric)
		}
	}
	if !strings.Contains(alerts["RetriggerHandlerFailureRateHigh"], "by (namespace, type)") {
		t.Errorf("the failure rate alert is not per type")
	}
}

// TestQueryParserRejects shows the query checks can fail.
func TestQueryParserRejects(t *testing.T) {
	if _, err := parseQuery(`sum(rate(retrigger_events_handled_total[5m])`); err == nil {
		t.Error("an unbalanced parenthesis parsed")
	}
	if base := metricBase("retrigger_events_handled"); base != "" {
		t.Error("a misspelt metric was accepted")
	}
	if base := metricBase("retrigger_checkpoint_age_seconds_bucket"); base != "" {
		t.Error("_bucket of a gauge was accepted")
	}
}

// grafanaDashboard is the part of a dashboard JSON the test reads.
type grafanaDashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

// TestGrafanaDashboard: the dashboard is valid JSON, its queries parse and
// read known metrics through the datasource variable, and every retrigger
// metric has a panel.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(kubeDir, "grafana", "retrigger.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("dashboard uid %q title %q schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the dashboard would be bound to one Prometheus")
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q does not use the datasource variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				checkQuery(t, "panel "+p.Title, tg.Expr, used)
				for _, m := range grafanaVar.FindAllStringSubmatch(tg.Expr, -1) {
					if !strings.HasPrefix(m[1], "__") && !vars[m[1]] {
						t.Errorf("panel %q uses undefined variable $%s", p.Title, m[1])
					}
				}
			}
		}
	}
	walk(d.Panels)
	for m := range retriggerMetrics {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}
