package ratelimit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
)

// State is one bucket as Snapshot saw it: what Restore needs to put it
// back. Tokens is the level at Last (unix nanoseconds); time since Last
// refills it at Rate, as it would have without the restart.
type State struct {
	Key         string
	Tokens      float64
	Rate, Burst float64
	Last        int64
}

// Changes counts the spends and refunds since New: a caller that saves
// snapshots compares it with the count at its last save and skips a save
// when nothing was spent.
func (l *Limiter) Changes() uint64 { return l.changes.Load() }

// Snapshot returns every bucket that holds state: one that has refilled to
// its burst is left out, as Allow's sweep would drop it. Each shard is
// read under its lock; the snapshot as a whole is not one instant, which
// matters only for spends made while it is taken (they are in the next).
func (l *Limiter) Snapshot() []State {
	now := l.now().UnixNano()
	var out []State
	for i := range l.shard {
		s := &l.shard[i]
		s.mu.Lock()
		for k, b := range s.m {
			if b.tokens+float64(now-b.last)/1e9*b.rate >= b.burst {
				continue
			}
			out = append(out, State{Key: k, Tokens: b.tokens, Rate: b.rate, Burst: b.burst, Last: b.last})
		}
		s.mu.Unlock()
	}
	return out
}

// Restore puts back buckets from a Snapshot, before the limiter is used.
// A bucket dated in the future (the clock stepped back) is dated now, so
// it refills from here on and never early. Where a key already has a
// bucket the one with fewer tokens wins: a restore never grants. A state
// with a negative, NaN or infinite number is refused as a whole.
func (l *Limiter) Restore(states []State) error {
	for _, st := range states {
		if st.Key == "" || !Valid(st.Rate, st.Burst) || math.IsNaN(st.Tokens) || math.IsInf(st.Tokens, 0) || st.Tokens < 0 {
			return fmt.Errorf("ratelimit: bucket %q: tokens %v, rate %v, burst %v are not a bucket", st.Key, st.Tokens, st.Rate, st.Burst)
		}
	}
	now := l.now().UnixNano()
	for _, st := range states {
		last := min(st.Last, now)
		s := &l.shard[hashKey(l, st.Key)]
		s.mu.Lock()
		if b, ok := s.m[st.Key]; !ok || st.Tokens < b.tokens {
			s.m[st.Key] = &bucket{tokens: min(st.Tokens, st.Burst), rate: st.Rate, burst: st.Burst, last: last}
		}
		s.mu.Unlock()
	}
	return nil
}

// The snapshot file: "PRL1", a uvarint count, then per bucket a uvarint
// key length, the key, and tokens, rate, burst (float64 bits) and last
// (int64), big-endian; last a CRC-32C of everything before it.
var magic = [4]byte{'P', 'R', 'L', '1'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt: a snapshot file that cannot be read as one. The caller must
// not start with fresh buckets in its place (that is a fresh burst for
// every flooder); the operator removes the file to reset the limits.
var ErrCorrupt = errors.New("ratelimit: snapshot file is corrupt")

// WriteFile saves a snapshot of l to path atomically: a 0600 temporary
// file in the same folder, fsynced, renamed over path, the folder fsynced.
// A crash leaves either the old snapshot or the new one.
func (l *Limiter) WriteFile(path string) error {
	states := l.Snapshot()
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".ratelimit-*")
	if err != nil {
		return fmt.Errorf("ratelimit: snapshot: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("ratelimit: snapshot: %w", err)
	}
	h := crc32.New(castagnoli)
	w := bufio.NewWriter(io.MultiWriter(f, h))
	var buf [binary.MaxVarintLen64 + 32]byte
	_, _ = w.Write(magic[:])
	_, _ = w.Write(binary.AppendUvarint(buf[:0], uint64(len(states))))
	for _, st := range states {
		_, _ = w.Write(binary.AppendUvarint(buf[:0], uint64(len(st.Key))))
		_, _ = w.WriteString(st.Key)
		b := binary.BigEndian.AppendUint64(buf[:0], math.Float64bits(st.Tokens))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(st.Rate))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(st.Burst))
		b = binary.BigEndian.AppendUint64(b, uint64(st.Last))
		_, _ = w.Write(b)
	}
	err = w.Flush()
	if err == nil {
		_, err = f.Write(binary.BigEndian.AppendUint32(buf[:0], h.Sum32()))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("ratelimit: snapshot %s: %w", path, err)
	}
	return nil
}

// ReadFile restores the snapshot at path into l. A missing file is no
// error (the first start); a file that is not a whole snapshot is
// ErrCorrupt, naming the file.
func (l *Limiter) ReadFile(path string) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ratelimit: snapshot %s: %w", path, err)
	}
	states, err := decode(raw)
	if err == nil {
		err = l.Restore(states)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w (remove it to reset every rate limit)", ErrCorrupt, path, err)
	}
	return nil
}

func decode(raw []byte) ([]State, error) {
	if len(raw) < len(magic)+4 || [4]byte(raw[:4]) != magic {
		return nil, errors.New("not a snapshot")
	}
	body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, errors.New("checksum mismatch")
	}
	p := body[4:]
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)) {
		return nil, errors.New("bad count")
	}
	p = p[k:]
	states := make([]State, 0, n)
	for range n {
		kl, k := binary.Uvarint(p)
		if k <= 0 || kl > uint64(len(p)-k) || uint64(len(p)-k)-kl < 32 {
			return nil, errors.New("truncated bucket")
		}
		p = p[k:]
		st := State{Key: string(p[:kl])}
		p = p[kl:]
		st.Tokens = math.Float64frombits(binary.BigEndian.Uint64(p))
		st.Rate = math.Float64frombits(binary.BigEndian.Uint64(p[8:]))
		st.Burst = math.Float64frombits(binary.BigEndian.Uint64(p[16:]))
		st.Last = int64(binary.BigEndian.Uint64(p[24:]))
		p = p[32:]
		states = append(states, st)
	}
	if len(p) != 0 {
		return nil, errors.New("trailing bytes")
	}
	return states, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
