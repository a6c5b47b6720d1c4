package zkafka

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/zkafka-go/zkafka/testhelper"
)

// statusScreenshot makes TestStatusPageInBrowser write docs/status-page.png
// (make status-screenshot).
var statusScreenshot = flag.Bool("status-screenshot", false, "write docs/status-page.png from TestStatusPageInBrowser")

// chromium returns the path of the headless browser, or skips the test when there is none,
// unless ZKAFKA_REQUIRE_BROWSER=1 (CI), which fails it instead.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("ZKAFKA_REQUIRE_BROWSER") == "1" {
		t.Fatal("chromium is not installed and ZKAFKA_REQUIRE_BROWSER=1 (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); ZKAFKA_REQUIRE_BROWSER=1 makes this a failure")
	return ""
}

// runChromium runs headless Chromium with args and returns its standard output.
func runChromium(t *testing.T, path string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	profile, err := os.MkdirTemp("", "zkafka-chromium-")
	require.NoError(t, err)
	defer os.RemoveAll(profile) // not t.TempDir: Chromium's helpers may still write there as it exits
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile}
	cmd := exec.CommandContext(ctx, path, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "chromium %v failed:\n%s", args, stderr.String())
	return stdout.Bytes()
}

// TestStatusPageInBrowser runs a Work whose handler is stuck on one key, serves StatusHandler
// and loads the page in headless Chromium: the rendered DOM shows that partition first,
// marked stuck, with the stuck message's offset and key (escaped, as text), in the handler.
// A second partition waits for a retry, a third behind the stuck handler, the fourth is
// fine. With -status-screenshot it also writes docs/status-page.png.
func TestStatusPageInBrowser(t *testing.T) {
	browser := chromium(t)
	e := newEmbeddedEnv(t)
	const topic = "orders" // the broker is the test's own
	testhelper.CreateTopic(t, e.addr, topic, 4)
	// HashRouting: the keys of partitions 2 and 3 go to other virtual partitions than the
	// stuck key's, so they finish; then one key of the stuck one's arrives on partition 3.
	stuckVP := routeKey(stuckKey, 8)
	shipment := func(onStuckVP bool) func() []byte {
		n := 0
		return func() []byte {
			for ; ; n++ {
				if k := fmt.Sprintf("shipment-%d", n); (routeKey(k, 8) == stuckVP) == onStuckVP {
					n++
					return []byte(k)
				}
			}
		}
	}
	var recs []rec
	for i := range 40 {
		key := []byte(fmt.Sprintf("customer-%d", i%7))
		if i == 2 {
			key = []byte(stuckKey)
		}
		recs = append(recs, rec{Key: key, Value: []byte("order"), Partition: 0})
	}
	recs = append(recs, rec{Key: []byte("payment-7"), Partition: 1}, rec{Key: []byte("payment-8"), Partition: 1})
	elsewhere := shipment(false)
	for i := range 12 {
		recs = append(recs, rec{Key: elsewhere(), Partition: int32(2 + i%2)})
	}
	e.produce(t, topic, recs)

	release := make(chan struct{})
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: "orders-worker", Topic: topic, AutoCommitIntervalMs: intp(100)}
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		switch m.Key {
		case stuckKey:
			select {
			case <-release:
			case <-ctx.Done():
			}
		case "payment-7":
			return errors.New("inventory service unavailable: connection refused")
		}
		return nil
	}, Speedup(8), HashRouting(), StuckAfter(500*time.Millisecond),
		WithRetry(RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Minute, MaxBackoff: time.Minute}))
	r := startWork(t, w)
	t.Cleanup(func() {
		close(release)
		require.NoError(t, r.stop(t))
	})
	var last Status
	require.Eventually(t, func() bool {
		st := w.Status()
		last = st
		return len(st.Partitions) == 4 && st.Partitions[0].Stuck && st.Partitions[0].CommittedOffset == 2 &&
			st.Partitions[1].Stuck && st.Partitions[2].EndOffset == 6 && st.Partitions[2].Unfinished == 0 &&
			st.Partitions[3].EndOffset == 6 && st.Partitions[3].Unfinished == 0
	}, 60*time.Second, 20*time.Millisecond, "last status: %+v", &last)
	e.produce(t, topic, []rec{{Key: shipment(true)(), Partition: 3}})
	require.Eventually(t, func() bool {
		last = w.Status()
		return last.Partitions[3].Stuck && last.Partitions[3].Oldest.WaitsFor == WaitQueued
	}, 60*time.Second, 20*time.Millisecond, "last status: %+v", &last)
	if *statusScreenshot {
		time.Sleep(2 * time.Second) // ages a person would see
	}

	srv := httptest.NewServer(StatusHandler(w))
	defer srv.Close()
	url := srv.URL + "/status?refresh=0"
	dom, err := html.Parse(bytes.NewReader(runChromium(t, browser, "--dump-dom", url)))
	require.NoError(t, err)
	rows := findAll(dom, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "row") })
	require.Len(t, rows, 4)
	var states []string
	for _, row := range rows {
		states = append(states, attr(row, "data-state"))
	}
	require.Equal(t, []string{"stuck", "stuck", "stuck", "ok"}, states, "stuck rows first")
	var stuck *html.Node
	for _, row := range rows[:3] {
		if attr(row, "data-partition") == "0" {
			stuck = row
		}
	}
	require.NotNil(t, stuck, "partition 0 is among the stuck rows")
	require.Equal(t, topic, attr(stuck, "data-topic"))
	cell := func(class string) string {
		cells := findAll(stuck, func(n *html.Node) bool { return n.Data == "td" && hasClass(n, class) })
		require.Len(t, cells, 1, class)
		return text(cells[0])
	}
	require.Equal(t, "0", cell("partition"))
	require.Equal(t, "2", cell("offset"))
	require.Equal(t, stuckKey, cell("key"), "the key is shown as text")
	require.Empty(t, findAll(stuck, func(n *html.Node) bool { return n.Data == "b" }), "the key's markup was escaped")
	require.Contains(t, cell("state"), "STUCK")
	require.Contains(t, cell("waits-for"), "handler")
	require.Equal(t, "38", cell("lag"))

	if *statusScreenshot {
		out, err := filepath.Abs(filepath.Join("docs", "status-page.png"))
		require.NoError(t, err)
		runChromium(t, browser, "--screenshot="+out, "--window-size=1200,700", "--hide-scrollbars", url)
		t.Logf("wrote %s", out)
	}
}

// findAll returns the nodes under n (n included) for which match is true, in document order.
func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	if n.Type == html.ElementNode && match(n) {
		out = append(out, n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		out = append(out, findAll(c, match)...)
	}
	return out
}

// attr returns n's attribute key, "" when it has none.
func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// hasClass reports whether n's class attribute lists class.
func hasClass(n *html.Node, class string) bool {
	return strings.Contains(" "+attr(n, "class")+" ", " "+class+" ")
}

// text returns the text under n, trimmed.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}
