// Package testkit holds the helpers the tests of the worker, the starter
// and the end-to-end suite share: a clean configuration environment, free
// ports, polling with a deadline, reading a Prometheus endpoint, and the
// module's programs built once per test binary.
package testkit

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/config"
)

// ClearConfigEnv unsets every configuration variable for the test, so the
// developer's own settings reach neither the code under test nor the
// programs it starts; t.Setenv restores them after.
func ClearConfigEnv(t testing.TB) {
	t.Helper()
	for _, v := range config.Variables() {
		t.Setenv(v.Name, "")
		if err := os.Unsetenv(v.Name); err != nil {
			t.Fatal(err)
		}
	}
}

// FreeAddress returns a loopback address nothing listens on.
func FreeAddress(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// Poll bounds, for WaitFor: a quick condition is seen to hold at once, a
// slow one (a program run, a query) is not called back to back.
const (
	firstPoll = 50 * time.Millisecond
	maxPoll   = 500 * time.Millisecond
)

// WaitFor polls cond until it holds, failing the test with cond's last
// word on why not once within has passed.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for poll := firstPoll; ; poll = min(2*poll, maxPoll) {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s; last: %s", what, within, why)
		}
		time.Sleep(min(poll, time.Until(deadline)))
	}
}

// Scrape reads the Prometheus endpoint at url.
func Scrape(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// builds are the programs Build made, in one directory per test binary.
var builds struct {
	sync.Mutex
	dir    string
	binary map[string]string // package path -> binary
}

// Build builds the module's program pkg ("./worker") on first use in this
// test binary and returns the binary's path. A package that calls it runs
// its tests through Main, which removes the binaries at the end.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if binary, ok := builds.binary[pkg]; ok {
		return binary
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "svcupdate-programs-")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir, builds.binary = dir, map[string]string{}
	}
	root := moduleRoot(t)
	binary := filepath.Join(builds.dir, filepath.Base(pkg))
	build := exec.Command("go", "build", "-o", binary, pkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s in %s: %v\n%s", pkg, root, err, out)
	}
	builds.binary[pkg] = binary
	return binary
}

// moduleRoot is the directory of the module's go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(gomod)))
}

// Main runs the tests of a package that calls Build, then removes what
// Build built. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}
