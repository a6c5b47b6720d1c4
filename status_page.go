package zkafka

// StatusHandler: Work.Status (status.go) as a web page a person reads at a glance, one row
// per partition with the stuck ones first, and the same data as JSON for machines. The page
// is html/template (status_page.html), so keys and errors from the data are escaped; it
// refreshes itself with a meta refresh, no script.

import (
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// defaultStatusRefresh is how often the status page reloads itself unless ?refresh= says.
const defaultStatusRefresh = 5

// StatusHandler serves the Status of works: an HTML page with one row per assigned
// partition, the stuck ones first and highlighted (PartitionStatus.Stuck: the position has
// not moved for StuckAfter, or the breaker is open), then the paused ones, each with its
// lag, the oldest unfinished message (offset, key, virtual partition, what it waits for and
// for how long), and per Work the group, breaker, in-flight totals and broker; below them
// the batches in their handler (WorkFactory.CreateBatch: size, first and last message, how
// long each has run). The page reloads itself every 5 s (?refresh=N seconds, 0: never).
//
// With ?format=json, or an Accept header that asks for application/json and not text/html,
// it serves {"taken_at": …, "stuck": …, "works": [Status, …]} instead. Only GET and HEAD are
// served. The page shows message keys and errors: mount it where only operators reach it,
// for example on an internal port:
//
//	mux := http.NewServeMux()
//	mux.Handle("/zkafka/status", zkafka.StatusHandler(work))
//	go http.ListenAndServe("127.0.0.1:8081", mux)
func StatusHandler(works ...*Work) http.Handler {
	return &statusPage{works: slices.DeleteFunc(slices.Clone(works), func(w *Work) bool { return w == nil })}
}

// statusPage is the handler StatusHandler returns.
type statusPage struct {
	works []*Work
}

// statusJSON is the JSON the status page serves.
type statusJSON struct {
	TakenAt time.Time `json:"taken_at"`
	Stuck   bool      `json:"stuck"`
	Works   []Status  `json:"works"`
}

func (p *statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	out := statusJSON{TakenAt: time.Now(), Works: make([]Status, 0, len(p.works))}
	for _, wk := range p.works {
		st := wk.Status()
		out.Stuck = out.Stuck || st.Stuck()
		out.Works = append(out.Works, st)
	}
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out) // a failed write is the client's end going away
		return
	}
	refresh := defaultStatusRefresh
	if s := r.URL.Query().Get("refresh"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			refresh = min(n, 3600)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = statusTemplate.Execute(w, newStatusView(out, refresh))
}

// wantsJSON reports whether r asks for JSON rather than the page.
func wantsJSON(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "json":
		return true
	case "html":
		return false
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

// statusView is what the page's template shows.
type statusView struct {
	TakenAt time.Time
	Refresh int
	Works   []Status
	Rows    []statusRow
	Batches []batchRow // batches in their handler (batch Works)
	Stuck   int        // rows stuck
	Paused  int        // rows paused and not stuck
}

// statusRow is one partition of one Work on the page.
type statusRow struct {
	Work  int // index in Works
	Group string
	State string // "stuck", "paused" or "ok"
	P     PartitionStatus
}

// batchRow is one batch in its handler on the page.
type batchRow struct {
	Group string
	B     BatchStatus
}

// newStatusView orders the partitions of s: stuck first (the longest standing first), then
// paused, then the rest, each by group, topic and partition.
func newStatusView(s statusJSON, refresh int) statusView {
	v := statusView{TakenAt: s.TakenAt, Refresh: refresh, Works: s.Works}
	for i, st := range s.Works {
		for _, b := range st.Batches {
			v.Batches = append(v.Batches, batchRow{Group: st.Group, B: b})
		}
		for _, p := range st.Partitions {
			row := statusRow{Work: i, Group: st.Group, State: "ok", P: p}
			switch {
			case p.Stuck:
				row.State = "stuck"
				v.Stuck++
			case p.Paused:
				row.State = "paused"
				v.Paused++
			}
			v.Rows = append(v.Rows, row)
		}
	}
	rank := map[string]int{"stuck": 0, "paused": 1, "ok": 2}
	slices.SortStableFunc(v.Rows, func(a, b statusRow) int {
		if d := rank[a.State] - rank[b.State]; d != 0 {
			return d
		}
		if a.State == "stuck" && a.P.StandingSeconds != b.P.StandingSeconds {
			if a.P.StandingSeconds > b.P.StandingSeconds {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		if c := strings.Compare(a.P.Topic, b.P.Topic); c != 0 {
			return c
		}
		return int(a.P.Partition) - int(b.P.Partition)
	})
	return v
}

//go:embed status_page.html
var statusPageHTML string

// statusTemplate renders statusView.
var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"key":     displayKey,
	"seconds": displaySeconds,
	"offset":  displayOffset,
	"bytes":   displayBytes,
	"int64":   func(n int) int64 { return int64(n) },
	"clock":   func(t time.Time) string { return t.Format("15:04:05") },
}).Parse(statusPageHTML))

// displayKey shows a key to a person: "(no key)" for none, quoted when it has bytes that are
// not printable UTF-8, cut to 80 characters.
func displayKey(o *OldestUnfinished) string {
	if o.KeyNil {
		return "(no key)"
	}
	k := o.Key
	if !utf8.ValidString(k) || strings.IndexFunc(k, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		k = strconv.Quote(k)
	}
	if utf8.RuneCountInString(k) > 80 {
		k = string([]rune(k)[:79]) + "…"
	}
	return k
}

// displaySeconds shows a duration in seconds as 850ms, 12.3s, 4m10s or 2h5m.
func displaySeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// displayOffset shows an offset, "–" when unknown.
func displayOffset(o int64) string {
	if o < 0 {
		return "–"
	}
	return strconv.FormatInt(o, 10)
}

// displayBytes shows a byte count in B, KiB, MiB or GiB.
func displayBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		suffix = s
		if f < unit {
			break
		}
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + suffix
}
