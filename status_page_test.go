package zkafka

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// servePage serves one GET of target with the given headers.
func servePage(t *testing.T, h http.Handler, target string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestStatusViewOrdersStuckFirst: stuck rows first, the longest standing first, then paused,
// then the rest by group, topic and partition.
func TestStatusViewOrdersStuckFirst(t *testing.T) {
	v := newStatusView(statusJSON{Works: []Status{
		{Group: "b", Partitions: []PartitionStatus{
			{Topic: "t", Partition: 0},
			{Topic: "t", Partition: 1, Stuck: true, StandingSeconds: 5},
		}},
		{Group: "a", Partitions: []PartitionStatus{
			{Topic: "t", Partition: 2, Paused: true},
			{Topic: "t", Partition: 1},
			{Topic: "t", Partition: 3, Stuck: true, StandingSeconds: 50, Paused: true},
		}},
	}}, 5)
	var got []string
	for _, r := range v.Rows {
		got = append(got, r.State+" "+r.Group+"/"+r.P.Topic+"/"+string(rune('0'+r.P.Partition)))
	}
	require.Equal(t, []string{"stuck a/t/3", "stuck b/t/1", "paused a/t/2", "ok a/t/1", "ok b/t/0"}, got)
	require.Equal(t, 2, v.Stuck)
	require.Equal(t, 1, v.Paused)
}

// TestStatusPageEscapesAndServesJSON renders the page of a Work that is not running, then
// the template with a stuck partition whose key and error need escaping, and the JSON form.
func TestStatusPageEscapesAndServesJSON(t *testing.T) {
	w := NewWorkFactory(NewClient(Config{BootstrapServers: []string{"127.0.0.1:1"}})).CreateWithFunc(
		ConsumerTopicConfig{ClientID: "c", GroupID: "g<script>", Topic: "orders"}, nil)
	h := StatusHandler(w, nil)

	page := servePage(t, h, "/status", nil)
	require.Equal(t, http.StatusOK, page.Code)
	require.Equal(t, "text/html; charset=utf-8", page.Header().Get("Content-Type"))
	require.Equal(t, "no-store", page.Header().Get("Cache-Control"))
	body := page.Body.String()
	require.Contains(t, body, `<meta http-equiv="refresh" content="5">`)
	require.Contains(t, body, "g&lt;script&gt;")
	require.NotContains(t, body, "g<script>")
	require.Contains(t, body, "no partitions assigned")
	require.NotContains(t, servePage(t, h, "/status?refresh=0", nil).Body.String(), `http-equiv="refresh"`)

	for _, req := range []struct {
		target string
		accept string
	}{{"/status?format=json", ""}, {"/status", "application/json"}} {
		rec := servePage(t, h, req.target, map[string]string{"Accept": req.accept})
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"), req)
		var got statusJSON
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		require.Len(t, got.Works, 1)
		require.Equal(t, "g<script>", got.Works[0].Group)
		require.False(t, got.Stuck)
	}
	require.Equal(t, "text/html; charset=utf-8",
		servePage(t, h, "/status", map[string]string{"Accept": "text/html,application/json"}).Header().Get("Content-Type"))

	post := httptest.NewRecorder()
	h.ServeHTTP(post, httptest.NewRequest(http.MethodPost, "/status", nil))
	require.Equal(t, http.StatusMethodNotAllowed, post.Code)

	var b strings.Builder
	now := time.Now()
	require.NoError(t, statusTemplate.Execute(&b, newStatusView(statusJSON{TakenAt: now, Works: []Status{{
		Group: "g", Running: true, Breaker: "closed",
		Partitions: []PartitionStatus{{Topic: "orders", Partition: 3, Stuck: true, StuckReason: "position has not moved for 12s",
			Oldest: &OldestUnfinished{Offset: 42, Key: stuckKey, WaitsFor: WaitDeadLetter, LastError: "<img src=x>",
				Detail: "writing its dead letter", WaitingSeconds: 12, AgeSeconds: 13}}},
	}}}, 5)))
	html := b.String()
	require.Contains(t, html, `<tr class="row stuck" data-state="stuck" data-topic="orders" data-partition="3">`)
	require.Contains(t, html, `<td class="key">stuck&lt;b&gt;&amp;&#34;key</td>`)
	require.Contains(t, html, "&lt;img src=x&gt;")
	require.NotContains(t, html, "<img")
	require.Contains(t, html, "<title>1 stuck · zkafka status</title>")

	for _, c := range []struct {
		st   Status
		want string
	}{
		{Status{MemberID: "m", Generation: 7, GroupProtocol: GroupProtocolClassic, RebalanceProtocol: "EAGER"}, "classic (EAGER) · generation 7"},
		{Status{MemberID: "m", Generation: 4, GroupProtocol: GroupProtocolConsumer, RebalanceProtocol: "COOPERATIVE"}, "consumer (COOPERATIVE) · epoch 4"},
		{Status{Running: true, Fenced: true, FencedBecause: "commit refused: <rebalance>"}, `<span class="badge stuck">fenced</span><br><span class="small error">commit refused: &lt;rebalance&gt;</span>`},
	} {
		b.Reset()
		require.NoError(t, statusTemplate.Execute(&b, newStatusView(statusJSON{TakenAt: now, Works: []Status{c.st}}, 0)))
		require.Contains(t, b.String(), c.want, "the protocol and the member's generation or epoch; a fence")
	}
}

func TestDisplayHelpers(t *testing.T) {
	require.Equal(t, "(no key)", displayKey(&OldestUnfinished{KeyNil: true}))
	require.Equal(t, `"a\x00b"`, displayKey(&OldestUnfinished{Key: "a\x00b"}))
	require.Equal(t, `"\xff"`, displayKey(&OldestUnfinished{Key: "\xff"}))
	require.Equal(t, strings.Repeat("x", 79)+"…", displayKey(&OldestUnfinished{Key: strings.Repeat("x", 100)}))
	require.Equal(t, "850ms", displaySeconds(0.85))
	require.Equal(t, "12.3s", displaySeconds(12.34))
	require.Equal(t, "4m10s", displaySeconds(250))
	require.Equal(t, "2h5m", displaySeconds(7500))
	require.Equal(t, "–", displayOffset(-1))
	require.Equal(t, "7", displayOffset(7))
	require.Equal(t, "512 B", displayBytes(512))
	require.Equal(t, "1.5 KiB", displayBytes(1536))
	require.Equal(t, "256.0 MiB", displayBytes(256<<20))
}
