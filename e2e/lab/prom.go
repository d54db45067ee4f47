//go:build linux

package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Prometheus is a Prometheus server in a namespace.
type Prometheus struct {
	NS   *NS
	Addr string // listen address inside NS
	Proc *Proc
}

// StartPrometheus runs prometheus in ns on 127.0.0.1:port, scraping
// target (host:port inside ns) every second as job "dls".
func (l *Lab) StartPrometheus(ns *NS, port int, target string) (*Prometheus, error) {
	dir := filepath.Join(l.Dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dls
    static_configs:
      - targets: [%q]
`, target)), 0o644); err != nil {
		return nil, err
	}
	p := &Prometheus{NS: ns, Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	cmd := ns.Command("prometheus", "--config.file="+cfg, "--web.listen-address="+p.Addr,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--log.level=warn")
	cmd.Dir = dir
	proc, err := l.Start("prometheus", cmd)
	if err != nil {
		return nil, err
	}
	p.Proc = proc
	if err := waitTCP(ns, p.Addr, 60*time.Second); err != nil {
		return nil, fmt.Errorf("prometheus: %w; log:\n%s", err, proc.LogTail(20))
	}
	return p, nil
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  string
}

// Query runs an instant PromQL query through the HTTP API.
func (p *Prometheus) Query(ctx context.Context, q string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+p.Addr+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.NS.HTTPClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("query %s: %s: %w", q, b, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	var out []Sample
	for _, s := range r.Data.Result {
		v := ""
		if len(s.Value) == 2 {
			v, _ = s.Value[1].(string)
		}
		out = append(out, Sample{Metric: s.Metric, Value: v})
	}
	return out, nil
}
