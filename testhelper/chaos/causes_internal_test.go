package chaos

import (
	"reflect"
	"strings"
	"testing"
)

func TestDuplicateCauses(t *testing.T) {
	ok := func(run string, p int32, o, at int64) event {
		return event{kind: evReturnOK, run: run, partition: p, offset: o, at: at, key: "k"}
	}
	events := []event{
		ok("a", 0, 1, 10), ok("b", 0, 1, 30), // a was killed at 20: kill
		ok("c", 0, 2, 10), ok("d", 0, 2, 15), // c ended at 40, after d re-processed: rebalance
		ok("c", 0, 3, 10), ok("c", 0, 3, 12), // the same run twice
		ok("e", 0, 4, 10), ok("drain", 0, 4, 99), // e stopped at the end of the chaos
		ok("a", 0, 5, 1), // processed once: no duplicate
	}
	ends := map[string]runEnd{
		"a": {how: string(FaultWorkerKill), at: 20},
		"c": {how: string(FaultWorkerLeave), at: 40},
		"e": {how: endFinal, at: 50},
	}
	got := duplicateCauses(events, ends)
	want := map[string]int{string(FaultWorkerKill): 1, CauseRebalance: 1, CauseSameRun: 1, endFinal: 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("duplicateCauses = %v, want %v", got, want)
	}
}

func TestOverlaps(t *testing.T) {
	ev := func(kind eventKind, run string, o, at int64, key string) event {
		return event{kind: kind, run: run, partition: 0, offset: o, at: at, key: key}
	}
	events := []event{
		ev(evStart, "a", 1, 10, "k"), ev(evReturnOK, "a", 1, 20, "k"),
		ev(evStart, "b", 1, 15, "k"), ev(evReturnOK, "b", 1, 25, "k"), // overlaps a
		ev(evStart, "b", 2, 30, "k"), ev(evReturnErr, "b", 2, 40, "k"),
		ev(evStart, "a", 3, 40, "k"), ev(evReturnOK, "a", 3, 45, "k"), // starts as b's ends: fine
		ev(evStart, "a", 4, 10, "other"), ev(evReturnOK, "a", 4, 50, "other"),
		ev(evStart, "c", 5, 20, "other"), // no return (killed): an instant... inside a's run
		ev(evStart, "c", 6, 20, "stuck"), ev(evReturnOK, "c", 6, 90, "stuck"),
		ev(evStart, "d", 7, 30, "stuck"), ev(evReturnOK, "d", 7, 31, "stuck"), // overlaps an abandoned handler: allowed
	}
	got := overlaps(events, func(_ int32, o int64) bool { return o == 6 })
	if len(got) != 1 || !strings.Contains(got[0], `key "k"`) || !strings.Contains(got[0], "run b started partition 0 offset 1") {
		t.Fatalf("overlaps = %q, want one for key k, run b offset 1", got)
	}
}
