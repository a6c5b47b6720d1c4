package commit

// The commit metadata's codec. A commit says more than "every message below this offset is
// finished": its metadata lists which offsets above the committed one are finished too, so
// that the partition's next owner — another member after a rebalance, or this program after a
// restart — skips them instead of running their handlers again (history.go). It also names
// the messages that were in a handler under suspicion when it was written (suspects.go), and
// whether its writer let the partition go on purpose.
//
// Version 1, the only one: "zkc:" followed by base64 (standard alphabet, no padding) of
//
//	version byte (1) | flags byte (bit 0 released, bit 1 runs deflated) |
//	uvarint base | varint stamp | varint epoch | uvarint read-base |
//	uvarint suspects, then per suspect: uvarint offset-base, uvarint deaths |
//	runs: uvarint lengths u0 f0 u1 f1 … (deflated when bit 1) |
//	CRC-32 (IEEE, big endian) of all of the above.
//
// Base64, because Apache Kafka reads the metadata as a UTF-8 string: other bytes do not
// survive it. The runs alternate from base: u0 offsets not finished (base is the oldest
// unfinished message; u0 is 0 when base is finished, see snapshot.go), f0 finished, u1 not
// finished, … and end with a finished run; offsets past the last run are not finished. Run
// lengths make the common case tiny (a few slow messages among thousands done) and cost 2
// bytes per 2 offsets at worst (alternating).
//
// Invariant: Decode never panics and returns an error for anything Encode did not write;
// Decode(Encode(c)) gives c back, except that a truncated encoding keeps only a prefix of the
// runs (the offsets past it read as not finished: never a skip of an unfinished message).

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

const (
	// MetadataPrefix starts every commit metadata this library writes.
	MetadataPrefix = "zkc:"
	// completionsVersion is the encoding's version byte.
	completionsVersion = 1
	// MetadataMaxBytes is the broker's default offset.metadata.max.bytes: the longest metadata
	// a commit may carry. A longer one fails the commit of its partition.
	MetadataMaxBytes = 4096
	// maxSuspects bounds the suspects one metadata names (the rest are forgotten).
	maxSuspects = 64
	// maxRunsBytes bounds the runs of a decoded metadata once inflated.
	maxRunsBytes = 1 << 20
	// maxSpan bounds the offsets the runs of one metadata may cover.
	maxSpan = 1 << 40
)

const (
	flagReleased = 1 << iota // written by an owner letting the partition go (revoke, stop)
	flagDeflated             // the runs are deflated
)

// Completions is what one commit's metadata says about its partition: a value of the
// encoding, written by Encode and read by Decode.
type Completions struct {
	Base     int64     // the committed offset: the oldest unfinished message read
	Stamp    int64     // that message's timestamp, Unix milliseconds
	Epoch    int32     // its leader epoch, -1 when unknown
	Read     int64     // the highest offset read when the commit was written, ≥ Base
	Released bool      // the writer let the partition go on purpose (revoke, stop, close)
	Runs     []uint64  // alternating unfinished and finished run lengths from Base
	Suspects []Suspect // messages in a handler under suspicion (suspects.go)
}

// Suspect is a message that was in a handler under suspicion when a commit was written:
// Deaths is how often the process died while it was, counting this time if it dies now.
type Suspect struct {
	Offset int64
	Deaths uint32
}

var (
	// ErrForeignMetadata is Decode's error for metadata this package did not write.
	ErrForeignMetadata = errors.New("zkafka: commit metadata written by something else")
	// ErrBadMetadata is Decode's error, wrapped, for metadata that claims to be this
	// package's and is not valid.
	ErrBadMetadata = errors.New("zkafka: commit metadata unreadable")
)

// Encode returns the metadata for c, at most limit bytes long. When the runs do not all fit,
// it keeps the longest prefix of them that does (deflated when that holds more) and reports
// truncated. A limit too small for anything gives "".
func (c *Completions) Encode(limit int) (md string, truncated bool) {
	budget := base64.RawStdEncoding.DecodedLen(limit-len(MetadataPrefix)) - crc32.Size
	runs, ends := appendRuns(nil, c.Runs)
	if b := c.payload(runs, false); len(b) <= budget {
		return seal(b), false
	}
	// Deflating runs rarely gains more than deflateGain: look no further, so that each of
	// the few deflates below stays small.
	for len(ends) > 1 && ends[len(ends)-1] > deflateGain*budget {
		ends = ends[:len(ends)-1]
		truncated = true
	}
	if b := c.payload(deflate(runs[:ends[len(ends)-1]]), true); len(b) <= budget {
		return seal(b), truncated
	}
	// The longest prefix of whole pairs (ending with a finished run) that fits.
	fits := func(pairs int) []byte {
		b := c.payload(runs[:ends[pairs]], false)
		if len(b) > budget {
			b = c.payload(deflate(runs[:ends[pairs]]), true)
		}
		if len(b) > budget {
			return nil
		}
		return b
	}
	best := fits(0)
	if best == nil {
		return "", true
	}
	for lo, hi := 0, len(ends)-1; lo < hi; { // fits(lo) holds; fits(hi+1) does not
		mid := (lo + hi + 1) / 2
		if b := fits(mid); b != nil {
			lo, best = mid, b
		} else {
			hi = mid - 1
		}
	}
	return seal(best), true
}

// deflateGain is the most Encode expects deflating runs to shrink them by.
const deflateGain = 8

// appendRuns appends runs as uvarints and returns, for each k, where the first k pairs end.
func appendRuns(b []byte, runs []uint64) ([]byte, []int) {
	ends := make([]int, 1, len(runs)/2+1)
	for i, r := range runs {
		b = binary.AppendUvarint(b, r)
		if i%2 == 1 {
			ends = append(ends, len(b))
		}
	}
	return b, ends
}

// payload is c's encoding before the checksum, with runs (deflated or not) as given.
func (c *Completions) payload(runs []byte, deflated bool) []byte {
	flags := byte(0)
	if c.Released {
		flags |= flagReleased
	}
	if deflated {
		flags |= flagDeflated
	}
	b := make([]byte, 0, 32+len(runs)+6*len(c.Suspects))
	b = append(b, completionsVersion, flags)
	b = binary.AppendUvarint(b, uint64(c.Base))
	b = binary.AppendVarint(b, c.Stamp)
	b = binary.AppendVarint(b, int64(c.Epoch))
	b = binary.AppendUvarint(b, uint64(c.Read-c.Base))
	n := min(len(c.Suspects), maxSuspects)
	b = binary.AppendUvarint(b, uint64(n))
	for _, s := range c.Suspects[:n] {
		b = binary.AppendUvarint(b, uint64(s.Offset-c.Base))
		b = binary.AppendUvarint(b, uint64(s.Deaths))
	}
	return append(b, runs...)
}

// seal appends the checksum and encodes b as metadata text.
func seal(b []byte) string {
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	return MetadataPrefix + base64.RawStdEncoding.EncodeToString(b)
}

// deflaters reuses flate writers: a new one allocates hundreds of kilobytes.
var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// deflate compresses b.
func deflate(b []byte) []byte {
	var out bytes.Buffer
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&out)
	_, _ = w.Write(b) // a bytes.Buffer does not fail
	_ = w.Close()
	deflaters.Put(w)
	return out.Bytes()
}

// Decode reads metadata written by Encode. It returns ErrForeignMetadata for
// metadata that is not this library's, ErrBadMetadata (wrapped) for metadata that claims to be
// and is not valid.
func Decode(md string) (*Completions, error) {
	if len(md) < len(MetadataPrefix) || md[:len(MetadataPrefix)] != MetadataPrefix {
		return nil, ErrForeignMetadata
	}
	b, err := base64.RawStdEncoding.DecodeString(md[len(MetadataPrefix):])
	if err != nil || len(b) < 2+crc32.Size {
		return nil, fmt.Errorf("%w: not base64 or too short", ErrBadMetadata)
	}
	body, sum := b[:len(b)-crc32.Size], binary.BigEndian.Uint32(b[len(b)-crc32.Size:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrBadMetadata)
	}
	if body[0] != completionsVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadMetadata, body[0])
	}
	if body[1]&^(flagReleased|flagDeflated) != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrBadMetadata, body[1])
	}
	d := decoder{b: body[2:]}
	c := &Completions{Released: body[1]&flagReleased != 0}
	c.Base = int64(d.uvarint())
	if c.Base < 0 || c.Base > 1<<62 {
		d.err = errors.New("base out of range")
	}
	c.Stamp = d.varint()
	epoch := d.varint()
	c.Read = d.offset(c.Base)
	n := d.uvarint()
	if d.err == nil && (epoch < -1 || epoch > 1<<31-1 || n > maxSuspects) {
		d.err = errors.New("field out of range")
	}
	c.Epoch = int32(epoch)
	for i := uint64(0); i < n && d.err == nil; i++ {
		s := Suspect{Offset: d.offset(c.Base)}
		if deaths := d.uvarint(); deaths <= 1<<32-1 {
			s.Deaths = uint32(deaths)
		} else {
			d.err = errors.New("deaths out of range")
		}
		c.Suspects = append(c.Suspects, s)
	}
	if d.err == nil {
		c.Runs, d.err = decodeRuns(d.b, body[1]&flagDeflated != 0)
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMetadata, d.err)
	}
	return c, nil
}

// decodeRuns reads the run lengths: each at least 1 (the first may be 0: base is finished), an
// even number of them, covering at most maxSpan offsets.
func decodeRuns(b []byte, deflated bool) ([]uint64, error) {
	if deflated {
		r := flate.NewReader(bytes.NewReader(b))
		inflated, err := io.ReadAll(io.LimitReader(r, maxRunsBytes+1))
		_ = r.Close()
		if err != nil || len(inflated) > maxRunsBytes {
			return nil, errors.New("runs do not inflate")
		}
		b = inflated
	}
	d := decoder{b: b}
	var runs []uint64
	span := uint64(0)
	for len(d.b) > 0 && d.err == nil {
		r := d.uvarint()
		if (r == 0 && len(runs) > 0) || r > maxSpan || span+r > maxSpan {
			return nil, errors.New("run out of range")
		}
		span += r
		runs = append(runs, r)
	}
	if d.err != nil || len(runs)%2 != 0 {
		return nil, errors.New("runs malformed")
	}
	return runs, nil
}

// decoder reads varints from b, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// offset reads an offset stored as a uvarint above from, within maxSpan of it.
func (d *decoder) offset(from int64) int64 {
	v := d.uvarint()
	if v > maxSpan {
		if d.err == nil {
			d.err = errors.New("offset out of range")
		}
		return 0
	}
	return from + int64(v)
}
