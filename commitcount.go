package zkafka

// The counts behind Status.Commits: what the commits and their metadata (internal/commit)
// did. The offset store (offsets.go) and the KReader (reader.go) update them.
//
// Invariant: each counter only grows.

import "sync/atomic"

// CommitCounts counts what a Work's commits did since the Work was created. Each field only
// grows, ready to be exported as a metric counter.
type CommitCounts struct {
	// Commits counts the commits written: finished offsets and, in their metadata, the
	// finished messages above the committed offset (see "Duplicates and poison pills" in
	// docs/guarantees.md).
	Commits int64 `json:"commits"`
	// AlreadyFinished counts the messages read and not handed to the processor because the
	// commit metadata of their partition said they were finished before: by another member
	// of the group, or by this program before a restart. They are not processed again.
	AlreadyFinished int64 `json:"already_finished"`
	// Truncated counts the commits whose metadata had no room (offset.metadata.max.bytes,
	// 4096 bytes) for every finished message above the committed offset. Those left out run
	// again should the partition change owner before the next commit.
	Truncated int64 `json:"truncated"`
	// Ignored counts the commit metadata found at an assignment and not used: written by
	// another library or version, or about another log (a topic deleted and created again).
	Ignored int64 `json:"ignored"`
}

// commitCounts returns the counts of this Work's commits, over all its runs (Status.Commits).
func (w *Work) commitCounts() CommitCounts {
	c := &w.commits
	return CommitCounts{
		Commits:         c.commits.Load(),
		AlreadyFinished: c.alreadyFinished.Load(),
		Truncated:       c.truncated.Load(),
		Ignored:         c.ignored.Load(),
	}
}

// commitCounters is the live form of CommitCounts.
type commitCounters struct {
	commits, alreadyFinished, truncated, ignored atomic.Int64
}
