package portal_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/svcupdate/svcupdate/internal/testkit"
)

// chromiumPath is Debian's chromium (.ci/run installs it when missing).
const chromiumPath = "/usr/bin/chromium"

// browser is one person's headless chromium (own cookies) on the portal.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("chromium is missing at %s (apt-get install -y chromium): %v", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, which lives as long as the context
	// it runs on: never one of the per-step timeouts.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, base: base, dir: screenshotDir(t)}
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

// open loads a path of the portal (or a full URL) and returns its heading.
func (b *browser) open(target string) string {
	b.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.base + target
	}
	b.do(chromedp.Navigate(target))
	return b.heading()
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

func (b *browser) heading() string {
	b.t.Helper()
	return b.eval(`(document.querySelector('h1') || {textContent: ''}).textContent.trim()`)
}

func (b *browser) text() string {
	b.t.Helper()
	return b.eval(`document.body.innerText`)
}

// submit clicks the button matched by css and waits for the next page,
// whose heading must contain want.
func (b *browser) submit(css, want string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(css)))
	b.waitHeading(want)
}

func (b *browser) waitHeading(want string) {
	b.t.Helper()
	testkit.WaitFor(b.t, 30*time.Second, "a page headed "+want, func() (bool, string) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		h, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('h1') || {textContent: ''}).textContent.trim()`))
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(h, want), "heading " + h
	})
}

// clickAndWaitText clicks css and waits for a page showing want (for a
// page that comes back with the same heading).
func (b *browser) clickAndWaitText(css, want string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(css)))
	testkit.WaitFor(b.t, 30*time.Second, "a page saying "+want, func() (bool, string) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(text, want), "the page says " + text
	})
}

// shot saves a PNG of the whole page as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// accessibilityProblems lists what the page gets wrong of the basics:
// a language, one h1, a label for every control, a name for every button
// and link.
const accessibilityProblems = `(() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push('html has no lang');
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push(h1 + ' h1 headings');
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    const labelled = (el.id && document.querySelector('label[for="' + el.id + '"]')) || el.getAttribute('aria-label') || el.closest('label');
    if (!labelled) problems.push('control without a label: ' + (el.name || el.outerHTML.slice(0, 60)));
  }
  for (const el of document.querySelectorAll('button, a')) {
    if (!(el.innerText || el.getAttribute('aria-label') || '').trim()) problems.push('unnamed ' + el.tagName.toLowerCase());
  }
  return problems.join('; ');
})()`

// checkPage screenshots the page and fails on accessibility problems.
func (b *browser) checkPage(name string) {
	b.t.Helper()
	b.shot(name)
	if problems := b.eval(accessibilityProblems); problems != "" {
		b.t.Errorf("page %s: %s", name, problems)
	}
}

// tabTo presses Tab until the focused element matches css (keyboard
// use: every control is reachable without a mouse), within 30 presses.
func (b *browser) tabTo(css string) {
	b.t.Helper()
	for range 30 {
		b.do(chromedp.KeyEvent("\t"))
		if b.eval(`document.activeElement && document.activeElement.matches(`+quoteJS(css)+`) ? 'yes' : ''`) == "yes" {
			return
		}
	}
	b.t.Fatalf("Tab never reached %s", css)
}

func quoteJS(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
