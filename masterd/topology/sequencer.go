package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
)

// Sequencer errors.
var (
	// ErrBadCount reports a request for zero keys.
	ErrBadCount = errors.New("topology: key count must be at least 1")
	// ErrExhausted reports that the key or volume id space is used up.
	ErrExhausted = errors.New("topology: id space exhausted")
	// ErrSequenceState reports an unreadable sequence file; the sequencer
	// refuses to start rather than risk reissuing keys.
	ErrSequenceState = errors.New("topology: bad sequence state")
	// ErrForeignKey reports a stored key this master never handed out
	// while its state is intact: a client chose its own file id.
	ErrForeignKey = errors.New("topology: key was not issued by this master")
)

// MaxReportedKey bounds the keys volume servers may report: a key at or
// above it (2^52, 142 years of a million keys a second) is taken for a file
// id a client chose, never for one this master issued, so that no request
// can push the sequencer to the end of the key space.
const MaxReportedKey = uint64(1) << 52

// DefaultKeyStep is the number of keys reserved on disk at a time.
const DefaultKeyStep = 10000

// SequenceFile is the name of the sequencer's state file in its directory.
const SequenceFile = "sequence.json"

// seqState is the persisted form.
type seqState struct {
	// KeyCeiling: no key >= KeyCeiling has been handed out.
	KeyCeiling uint64 `json:"keyCeiling"`
	// MaxVolumeID: no volume id > MaxVolumeID has been handed out or seen.
	MaxVolumeID uint32 `json:"maxVolumeId"`
}

// Sequencer hands out file keys and volume ids that are never reissued,
// also across restarts: it persists a key ceiling (a high-water mark that
// runs ahead of the keys handed out by a step, so most calls touch no disk)
// and the highest volume id. Keys start at 1. A restart skips the unused
// rest of the last reserved range. Safe for concurrent use.
type Sequencer struct {
	dir  string
	step uint64

	// recovering: there was no state at start (first start, or the state
	// was lost), so keys reported by volume servers are the only record
	// of what was handed out.
	recovering bool

	mu    sync.Mutex
	next  uint64 // next key to hand out
	state seqState
}

// OpenSequencer loads (or creates) the sequencer state in dir. step is the
// number of keys reserved per disk write; 0 means DefaultKeyStep.
func OpenSequencer(dir string, step uint64) (*Sequencer, error) {
	if step == 0 {
		step = DefaultKeyStep
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("topology: sequencer dir: %w", err)
	}
	s := &Sequencer{dir: dir, step: step}
	b, err := os.ReadFile(filepath.Join(dir, SequenceFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.recovering = true
	case err != nil:
		return nil, fmt.Errorf("topology: read sequence: %w", err)
	default:
		if err := json.Unmarshal(b, &s.state); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrSequenceState, filepath.Join(dir, SequenceFile), err)
		}
	}
	s.next = max(s.state.KeyCeiling, 1)
	// Write the file now so an unwritable directory fails at start, not at
	// the first assign.
	if err := s.persist(s.state); err != nil {
		return nil, err
	}
	return s, nil
}

// NextKeys reserves count consecutive keys and returns the first.
func (s *Sequencer) NextKeys(count uint64) (uint64, error) {
	if count == 0 {
		return 0, ErrBadCount
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next > math.MaxUint64-count {
		return 0, fmt.Errorf("%w: cannot reserve %d keys after %d", ErrExhausted, count, s.next)
	}
	end := s.next + count
	if end > s.state.KeyCeiling {
		st := s.state
		st.KeyCeiling = satAdd(end, s.step)
		if err := s.persist(st); err != nil {
			return 0, err
		}
		s.state = st
	}
	first := s.next
	s.next = end
	return first, nil
}

// SetMax makes sure every key handed out from now on is above k (a key a
// volume server reports as stored). With an intact state, a key at or above
// the persisted ceiling was never handed out by this master: a client wrote
// to a file id of its own choosing. Such keys are refused with
// ErrForeignKey. Without state at start, every reported key below
// MaxReportedKey counts.
func (s *Sequencer) SetMax(k uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k < s.next {
		return nil
	}
	if k >= MaxReportedKey || !s.recovering && k >= s.state.KeyCeiling {
		return fmt.Errorf("%w: key %d is above the ceiling %d", ErrForeignKey, k, s.state.KeyCeiling)
	}
	if k+1 > s.state.KeyCeiling {
		st := s.state
		st.KeyCeiling = satAdd(k+1, s.step)
		if err := s.persist(st); err != nil {
			return err
		}
		s.state = st
	}
	s.next = k + 1
	return nil
}

// Peek returns the next key NextKeys would return.
func (s *Sequencer) Peek() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// NextVolumeID reserves and returns a new volume id, persisted before it
// is returned.
func (s *Sequencer) NextVolumeID() (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.MaxVolumeID == math.MaxUint32 {
		return 0, fmt.Errorf("%w: volume ids", ErrExhausted)
	}
	st := s.state
	st.MaxVolumeID++
	if err := s.persist(st); err != nil {
		return 0, err
	}
	s.state = st
	return st.MaxVolumeID, nil
}

// SetMaxVolumeID makes sure no volume id up to id is handed out.
func (s *Sequencer) SetMaxVolumeID(id uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id <= s.state.MaxVolumeID {
		return nil
	}
	st := s.state
	st.MaxVolumeID = id
	if err := s.persist(st); err != nil {
		return err
	}
	s.state = st
	return nil
}

// MaxVolumeID returns the highest volume id handed out or seen.
func (s *Sequencer) MaxVolumeID() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.MaxVolumeID
}

// persist writes st crash-safely: temp file, fsync, rename, fsync of the
// directory.
func (s *Sequencer) persist(st seqState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("topology: encode sequence: %w", err)
	}
	final := filepath.Join(s.dir, SequenceFile)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("topology: write sequence: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("topology: write sequence: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("topology: sync sequence: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("topology: write sequence: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("topology: write sequence: %w", err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("topology: sync sequence dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("topology: sync sequence dir: %w", err)
	}
	return nil
}

func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}
