package topology

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func openSeq(t *testing.T, dir string, step uint64) *Sequencer {
	t.Helper()
	s, err := OpenSequencer(dir, step)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSequencerRuns(t *testing.T) {
	s := openSeq(t, t.TempDir(), 100)
	k, err := s.NextKeys(1)
	if err != nil || k != 1 {
		t.Fatalf("first key %d %v", k, err)
	}
	k, _ = s.NextKeys(5)
	if k != 2 {
		t.Fatalf("second run starts at %d", k)
	}
	if k, _ = s.NextKeys(1); k != 7 {
		t.Fatalf("after a run of 5 from 2: %d", k)
	}
	if _, err := s.NextKeys(0); !errors.Is(err, ErrBadCount) {
		t.Fatalf("count 0: %v", err)
	}
	// A run larger than the step.
	k, _ = s.NextKeys(1000)
	if k != 8 || s.Peek() != 1008 {
		t.Fatalf("big run at %d, next %d", k, s.Peek())
	}
}

func TestSequencerTouchesDiskOncePerStep(t *testing.T) {
	dir := t.TempDir()
	s := openSeq(t, dir, 1000)
	path := filepath.Join(dir, SequenceFile)
	if _, err := s.NextKeys(1); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		if _, err := s.NextKeys(1); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatalf("state rewritten within a step: %s -> %s", before, after)
	}
	for i := 0; i < 600; i++ {
		if _, err := s.NextKeys(1); err != nil {
			t.Fatal(err)
		}
	}
	after, _ = os.ReadFile(path)
	if string(before) == string(after) {
		t.Fatalf("ceiling not raised past the step: %s", after)
	}
}

func TestSequencerRestartNeverReissues(t *testing.T) {
	dir := t.TempDir()
	issued := map[uint64]bool{}
	take := func(s *Sequencer, count uint64) {
		t.Helper()
		k, err := s.NextKeys(count)
		if err != nil {
			t.Fatal(err)
		}
		for i := uint64(0); i < count; i++ {
			if issued[k+i] {
				t.Fatalf("key %d issued twice", k+i)
			}
			issued[k+i] = true
		}
	}
	for restart := 0; restart < 5; restart++ {
		s := openSeq(t, dir, 7) // a small step crosses ceilings often
		for i := 0; i < 20; i++ {
			take(s, uint64(i%4+1))
		}
		// The old sequencer is dropped without any shutdown call, as in a crash.
	}
	if len(issued) == 0 {
		t.Fatal("nothing issued")
	}
}

func TestSequencerSetMax(t *testing.T) {
	dir := t.TempDir()
	s := openSeq(t, dir, 10)
	if err := s.SetMax(5000); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.NextKeys(1); k != 5001 {
		t.Fatalf("after SetMax(5000): %d", k)
	}
	if err := s.SetMax(3); err != nil { // lower: no effect
		t.Fatal(err)
	}
	if k, _ := s.NextKeys(1); k != 5002 {
		t.Fatalf("after lower SetMax: %d", k)
	}
	// SetMax is persisted: a restart starts above it even with no key
	// handed out since.
	if err := s.SetMax(90000); err != nil {
		t.Fatal(err)
	}
	s2 := openSeq(t, dir, 10)
	if k, _ := s2.NextKeys(1); k <= 90000 {
		t.Fatalf("restart after SetMax(90000) issued %d", k)
	}
	// With its state intact, a key above the ceiling was never issued by
	// this master (a client picked its own fid): refused, ceiling unmoved.
	if err := s2.SetMax(math.MaxUint64 - 1); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("SetMax(foreign key) on an intact state: %v", err)
	}
	if k, err := s2.NextKeys(1); err != nil || k > 100000 {
		t.Fatalf("after a refused foreign key: key %d, %v", k, err)
	}
	// Without state (lost or first start) every reported key counts, below
	// MaxReportedKey.
	s3 := openSeq(t, t.TempDir(), 10)
	if err := s3.SetMax(MaxReportedKey); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("SetMax(MaxReportedKey): %v", err)
	}
	if err := s3.SetMax(MaxReportedKey - 1); err != nil {
		t.Fatal(err)
	}
	if k, err := s3.NextKeys(2); err != nil || k != MaxReportedKey {
		t.Fatalf("after SetMax(MaxReportedKey-1): key %d, %v", k, err)
	}
}

func TestSequencerVolumeIDs(t *testing.T) {
	dir := t.TempDir()
	s := openSeq(t, dir, 0)
	for want := uint32(1); want <= 3; want++ {
		if id, err := s.NextVolumeID(); err != nil || id != want {
			t.Fatalf("volume id %d %v, want %d", id, err, want)
		}
	}
	if err := s.SetMaxVolumeID(10); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMaxVolumeID(4); err != nil {
		t.Fatal(err)
	}
	if id, _ := s.NextVolumeID(); id != 11 {
		t.Fatalf("after SetMaxVolumeID(10): %d", id)
	}
	// Restart: ids continue, even though no server reports them.
	s2 := openSeq(t, dir, 0)
	if s2.MaxVolumeID() != 11 {
		t.Fatalf("restored max volume id %d", s2.MaxVolumeID())
	}
	if id, _ := s2.NextVolumeID(); id != 12 {
		t.Fatalf("after restart: %d", id)
	}
}

func TestSequencerConcurrent(t *testing.T) {
	s := openSeq(t, t.TempDir(), 50)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k, err := s.NextKeys(3)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for j := k; j < k+3; j++ {
					if seen[j] {
						t.Errorf("key %d issued twice", j)
					}
					seen[j] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestSequencerBadState(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SequenceFile), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSequencer(dir, 0); !errors.Is(err, ErrSequenceState) {
		t.Fatalf("corrupt state: %v", err)
	}
	// An unwritable directory fails at open.
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSequencer(filepath.Join(file, "sub"), 0); err == nil {
		t.Fatal("sequencer opened under a regular file")
	}
}
