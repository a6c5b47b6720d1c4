package commit

// The ordering tracker: which offset of a partition may be stored. Each partition keeps a ring
// of the offsets read, in read order, with a finished flag. A message carries its sequence
// number in the ring. Finishing sets the flag; while the oldest entry is finished it is popped
// and the offset to store moves to its offset + 1. O(1) amortised per message and no
// allocation once the ring has grown to the number of unfinished messages. Gaps in offsets
// (compaction, transaction markers) need no care: only offsets that were read are in the ring.
//
// Invariant: next = 1 + the highest offset below which every message read is finished (-1
// while nothing is), and an offset is read at most once per assignment.

// ringStart is the ring's first length (a power of two).
const ringStart = 64

// partitionTracker is the ordering of one assigned partition. Every field is guarded by the
// mu of the Partition that holds it.
type partitionTracker struct {
	offsets []int64  // guarded by Partition.mu: the ring's offsets, by sequence number
	done    []bool   // guarded by Partition.mu: the ring's finished flags
	ids     []Record // guarded by Partition.mu: the ring's records
	head    uint64   // guarded by Partition.mu: sequence number of the oldest unfinished entry
	tail    uint64   // guarded by Partition.mu: sequence number the next read message gets
	next    int64    // guarded by Partition.mu: offset to store, last popped + 1; -1: none popped
	lastID  Record   // guarded by Partition.mu: the record of the last popped entry, at next - 1
	// lastRead (guarded by Partition.mu) is the highest offset read: librdkafka, seldom,
	// delivers a partition's messages again from an earlier offset after a pause (seen after
	// an assignment without a committed offset); those are not recorded twice.
	lastRead  int64
	firstRead int64 // guarded by Partition.mu: the first offset read in the assignment; -1: none
}

func newPartitionTracker() partitionTracker {
	return partitionTracker{
		offsets:   make([]int64, ringStart),
		done:      make([]bool, ringStart),
		ids:       make([]Record, ringStart),
		next:      -1,
		lastRead:  -1,
		firstRead: -1,
	}
}

// add records the message read at offset, record id, and returns its sequence number; ok is
// false for an offset at or below the highest read (not recorded).
func (o *partitionTracker) add(offset int64, id Record) (seq uint64, ok bool) {
	if offset <= o.lastRead {
		return 0, false
	}
	o.lastRead = offset
	if o.firstRead < 0 {
		o.firstRead = offset
	}
	if o.tail-o.head == uint64(len(o.offsets)) {
		o.grow()
	}
	seq = o.tail
	i := seq & uint64(len(o.offsets)-1)
	o.offsets[i], o.done[i], o.ids[i] = offset, false, id
	o.tail++
	return seq, true
}

// holds reports whether seq is in the ring: read and not popped.
func (o *partitionTracker) holds(seq uint64) bool { return seq >= o.head && seq < o.tail }

// finish marks seq, which the ring holds, finished and pops the finished prefix. It returns
// seq's offset and whether next moved.
func (o *partitionTracker) finish(seq uint64) (offset int64, moved bool) {
	mask := uint64(len(o.offsets) - 1)
	o.done[seq&mask] = true
	for o.head != o.tail && o.done[o.head&mask] {
		o.next = o.offsets[o.head&mask] + 1
		o.done[o.head&mask] = false
		o.head++
		moved = true
	}
	if moved {
		o.lastID = o.ids[(o.head-1)&mask]
	}
	return o.offsets[seq&mask], moved
}

// empty reports whether every message read is finished (and popped).
func (o *partitionTracker) empty() bool { return o.head == o.tail }

// oldest returns the oldest unfinished message's offset and record; the ring is not empty.
func (o *partitionTracker) oldest() (int64, Record) {
	h := o.head & uint64(len(o.offsets)-1)
	return o.offsets[h], o.ids[h]
}

// newest returns the newest offset in the ring; the ring is not empty.
func (o *partitionTracker) newest() int64 {
	return o.offsets[(o.tail-1)&uint64(len(o.offsets)-1)]
}

// unfinished counts the messages read and not finished: one step per message in the ring.
func (o *partitionTracker) unfinished() int {
	mask := uint64(len(o.offsets) - 1)
	n := 0
	for seq := o.head; seq != o.tail; seq++ {
		if !o.done[seq&mask] {
			n++
		}
	}
	return n
}

// finishedAbove appends to out the finished offsets above the oldest unfinished one, ascending.
func (o *partitionTracker) finishedAbove(out []int64) []int64 {
	mask := uint64(len(o.offsets) - 1)
	for s := o.head; s != o.tail; s++ {
		if i := s & mask; o.done[i] {
			out = append(out, o.offsets[i])
		}
	}
	return out
}

// appendRuns adds the ring's offsets from base, the oldest unfinished, to b. Offsets that were
// not read (gaps) count as unfinished.
func (o *partitionTracker) appendRuns(b *runsBuilder, base int64) {
	mask := uint64(len(o.offsets) - 1)
	prev := base - 1
	for s := o.head; s != o.tail; s++ {
		i := s & mask
		off := o.offsets[i]
		b.add(uint64(off-prev-1), false)
		b.add(1, o.done[i])
		prev = off
	}
}

// grow doubles the ring, keeping entries at their sequence positions.
func (o *partitionTracker) grow() {
	n := len(o.offsets)
	offsets := make([]int64, 2*n)
	done := make([]bool, 2*n)
	ids := make([]Record, 2*n)
	mask := uint64(2*n - 1)
	old := uint64(n - 1)
	for s := o.head; s != o.tail; s++ {
		offsets[s&mask] = o.offsets[s&old]
		done[s&mask] = o.done[s&old]
		ids[s&mask] = o.ids[s&old]
	}
	o.offsets, o.done, o.ids = offsets, done, ids
}
