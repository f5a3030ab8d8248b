package e2e

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/svcupdate/svcupdate/internal/testkit"
)

// metricName is a metric of the worker's, as the dashboard and the alert
// rules name them.
var metricName = regexp.MustCompile(`\b(?:svcupdate|temporal)_[a-z0-9_]+\b`)

// deployQueries returns the PromQL of the Grafana dashboard's panels and of
// the alert rules, both files parsed as Grafana and Prometheus would.
func deployQueries(t *testing.T) []string {
	t.Helper()
	var dashboard struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, err := os.ReadFile("../deploy/grafana/svcupdate.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dashboard); err != nil {
		t.Fatalf("deploy/grafana/svcupdate.json: %v", err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if data, err = os.ReadFile("../deploy/prometheus/alerts.yml"); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("deploy/prometheus/alerts.yml: %v", err)
	}
	var queries []string
	for _, p := range dashboard.Panels {
		for _, target := range p.Targets {
			queries = append(queries, target.Expr)
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			queries = append(queries, r.Expr)
		}
	}
	return queries
}

// checkDeployMetrics checks that every metric the dashboard and the alert
// rules query is one the worker at url serves, after a whole lifecycle.
func checkDeployMetrics(t *testing.T, url string) {
	t.Helper()
	body, err := testkit.Scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for line := range strings.Lines(body) {
		if name, _, ok := strings.Cut(line, "{"); ok && !strings.HasPrefix(line, "#") {
			served = append(served, strings.TrimSpace(name))
		} else if fields := strings.Fields(line); len(fields) == 2 {
			served = append(served, fields[0])
		}
	}
	queries := deployQueries(t)
	if len(queries) < 5 {
		t.Fatalf("the dashboard and alert rules hold %d queries", len(queries))
	}
	for _, q := range queries {
		for _, name := range metricName.FindAllString(q, -1) {
			if !slices.Contains(served, name) {
				t.Errorf("deploy/ queries %s, which the worker does not serve (query %q)", name, q)
			}
		}
	}
}
