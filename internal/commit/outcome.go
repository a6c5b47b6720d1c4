package commit

// Action is what becomes of a message just read, as its partition's tracker decides.
type Action uint8

const (
	// Process runs the message's handler.
	Process Action = iota
	// Skip is for a message finished before (history.go): the tracker finished it at once,
	// and it is not run.
	Skip
	// Drop is for an offset read before in this assignment (librdkafka rewound the
	// partition); it is neither recorded nor run.
	Drop
	// Hold is for a suspected poison pill, in a handler when an owner may have died
	// (suspects.go). It runs only after a commit says it is in a handler, or is quarantined
	// once Deaths reaches the caller's limit.
	Hold
	// AwaitRecord is for a message read in the partition's window after an owner died
	// (suspects.go); it runs once a commit says it was read.
	AwaitRecord
)

// Outcome is what the tracker says of a message just read: one Action, and for Hold how
// often in a row the process died with it in a handler.
type Outcome struct {
	action Action
	deaths uint32
	// ignored: the partition's last commit turned out to be about another log (a topic
	// deleted and created again) and is no longer used; a fact to report, whatever the action.
	ignored bool
}

// Action is what becomes of the message.
func (o Outcome) Action() Action { return o.action }

// Deaths is how often in a row the process died with the message in a handler (Hold).
func (o Outcome) Deaths() uint32 { return o.deaths }

// MetadataIgnored reports that the partition's last commit turned out, at this message, to be
// about another log: what it said is not used.
func (o Outcome) MetadataIgnored() bool { return o.ignored }

// Plain reports whether the message simply runs: Process, and nothing to report.
func (o Outcome) Plain() bool { return o == Outcome{} }

// Quarantine reports whether the message is a poison pill for a limit of after deaths
// (0: detection off): held, and died with at least after times.
func (o Outcome) Quarantine(after uint32) bool {
	return after > 0 && o.action == Hold && o.deaths >= after
}
