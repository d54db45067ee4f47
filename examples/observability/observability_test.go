// Package observability holds no code: its tests check the example Grafana
// dashboard and Prometheus alert rules against the metric families the
// host and the plugins declare, so a renamed family breaks the build
// instead of silently emptying a panel or muting an alert. The rules' own
// unit tests run with promtool (.ci/rules-test.sh).
package observability

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const (
	dashboardFile  = "grafana-dashboard.json"
	alertsFile     = "alerts.yml"
	alertsTestFile = "alerts_test.yml"
	dsUID          = "${DS_PROMETHEUS}"
)

var (
	// familyDecl is a family name as a Go string literal ("dls_...").
	familyDecl = regexp.MustCompile(`"(dls_[a-z0-9_]*[a-z0-9])"`)
	// metricRef is a dls_ metric name used in an expression or text.
	metricRef = regexp.MustCompile(`\bdls_[a-z0-9_]*[a-z0-9]\b`)
)

// declaredFamilies returns the dls_ family names declared in the module's
// non-test Go sources (host: core/, plugins: plugins/, sdk/, examples/).
func declaredFamilies(t *testing.T) map[string]bool {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	fams := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "var", "testdata", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range familyDecl.FindAllStringSubmatch(string(b), -1) {
			fams[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The families every DLS scrape has; if these are missing the walk is wrong.
	for _, f := range []string{"dls_plugin_up", "dls_boot_sessions_total", "dls_dhcp_pool_addresses", "dls_storage_available_bytes"} {
		if !fams[f] {
			t.Fatalf("family %s not found in the sources under %s", f, root)
		}
	}
	return fams
}

// known reports whether name is a declared family or a histogram's series.
func known(fams map[string]bool, name string) bool {
	if fams[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] {
			return true
		}
	}
	return false
}

func checkNames(t *testing.T, fams map[string]bool, where, text string) {
	t.Helper()
	for _, name := range metricRef.FindAllString(text, -1) {
		if !known(fams, name) {
			t.Errorf("%s: %s is not a family DLS declares", where, name)
		}
	}
}

type target struct {
	Expr       string            `json:"expr"`
	RefID      string            `json:"refId"`
	Datasource map[string]string `json:"datasource"`
}

type panel struct {
	ID         int               `json:"id"`
	Type       string            `json:"type"`
	Title      string            `json:"title"`
	Datasource map[string]string `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []target `json:"targets"`
	Panels     []panel  `json:"panels"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

// grafanaVars turns a dashboard expression into plain PromQL: Grafana's
// variables become values promtool accepts.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "6h",
	"$window", "30m",
	"$instance", ".*",
	"$plugin", ".*",
)

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s does not parse: %v", dashboardFile, err)
	}
	return d
}

// expressions returns the dashboard's PromQL, keyed by where it is.
func expressions(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	ids := map[int]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d missing or also used by %q", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos.W < 1 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource["uid"] != dsUID || p.Datasource["type"] != "prometheus" {
				t.Errorf("panel %q: datasource %v, want the %s variable", p.Title, p.Datasource, dsUID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q, query %s: empty expression", p.Title, tg.RefID)
				}
				if tg.Datasource["uid"] != dsUID {
					t.Errorf("panel %q, query %s: datasource %v, want %s", p.Title, tg.RefID, tg.Datasource, dsUID)
				}
				exprs["panel "+p.Title+" / "+tg.RefID] = tg.Expr
			}
		}
	}
	walk(d.Panels)
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			exprs["annotation "+a.Name] = a.Expr
		}
	}
	return exprs
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want >= 39 (current Grafana)", d.SchemaVersion)
	}
	vars := map[string]string{}
	fams := declaredFamilies(t)
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" {
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("variable %s: query: %v", v.Name, err)
			}
			checkNames(t, fams, "variable "+v.Name, q.Query)
		}
	}
	for name, typ := range map[string]string{"DS_PROMETHEUS": "datasource", "instance": "query", "plugin": "query"} {
		if vars[name] != typ {
			t.Errorf("templating variable %s: type %q, want %q", name, vars[name], typ)
		}
	}

	exprs := expressions(t, d)
	if len(exprs) < 20 {
		t.Errorf("only %d expressions found", len(exprs))
	}
	for where, e := range exprs {
		if !metricRef.MatchString(e) {
			t.Errorf("%s: no dls_ metric in %q", where, e)
		}
		checkNames(t, fams, where, e)
	}

	// Every panel the issue asks for reads its family.
	all := ""
	for _, e := range exprs {
		all += e + "\n"
	}
	for _, f := range []string{
		"dls_boot_sessions_total", "dls_boot_time_seconds_bucket", "dls_boot_failures_total",
		"dls_dhcp_requests_total", "dls_dhcp_errors_total", "dls_tftp_requests_total", "dls_tftp_errors_total",
		"dls_iscsi_connections_total", "dls_iscsi_errors_total",
		"dls_storage_used_bytes", "dls_storage_available_bytes",
		"dls_plugin_up", "dls_service_restarts_total",
		"dls_database_query_duration_seconds_bucket", "dls_auth_failures_total",
	} {
		if !strings.Contains(all, f) {
			t.Errorf("no panel reads %s", f)
		}
	}
	for _, q := range []string{"histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,"} {
		if !strings.Contains(all, q+" sum by (le) (rate(dls_boot_time_seconds_bucket") {
			t.Errorf("no boot time quantile %s", q)
		}
	}
}

// TestDashboardPromQL parses every dashboard expression with promtool, as
// recording rules (promtool cannot check a dashboard itself).
func TestDashboardPromQL(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	exprs := expressions(t, loadDashboard(t))
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for i, k := range keys {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", i), Expr: grafanaVars.Replace(exprs[k])})
	}
	doc := map[string]any{"groups": []map[string]any{{"name": "dashboard", "rules": rules}}}
	b, err := json.Marshal(doc) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
	if err != nil {
		for i, k := range keys {
			t.Logf("rule %d: %s: %s", i, k, rules[i].Expr)
		}
		t.Fatalf("promtool check rules on the dashboard's expressions: %v\n%s", err, out)
	}
}

// TestAlertRules checks the rules' metric names and that alerts_test.yml
// has a firing and a not-firing case for every alert.
func TestAlertRules(t *testing.T) {
	rules, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	checkNames(t, declaredFamilies(t), alertsFile, string(rules))

	alertName := regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)\s*$`)
	var alerts []string
	for _, m := range alertName.FindAllStringSubmatch(string(rules), -1) {
		alerts = append(alerts, m[1])
	}
	if len(alerts) < 7 {
		t.Fatalf("%s: %d alerts, want at least 7", alertsFile, len(alerts))
	}

	tests, err := os.ReadFile(alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	current := ""
	for _, line := range strings.Split(string(tests), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "alertname:"):
			current = strings.TrimSpace(strings.TrimPrefix(l, "alertname:"))
		case l == "exp_alerts: []":
			quiet[current] = true
		case strings.HasPrefix(l, "- exp_labels:"):
			firing[current] = true
		}
	}
	for _, a := range alerts {
		if !firing[a] {
			t.Errorf("%s: no test where %s fires", alertsTestFile, a)
		}
		if !quiet[a] {
			t.Errorf("%s: no test where %s does not fire", alertsTestFile, a)
		}
	}
}
