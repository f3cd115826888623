package meta

import (
	"fmt"
	"math/rand"
	"testing"
)

func TestVisibleIntervalsCases(t *testing.T) {
	c := func(off, size int64, id string, ts int64) Chunk {
		return Chunk{Offset: off, Size: size, FileID: id, ModifiedNs: ts}
	}
	for _, tc := range []struct {
		in   []Chunk
		want string
	}{
		{nil, "[]"},
		{[]Chunk{c(0, 10, "a", 1)}, "[a[0,10)@0]"},
		{[]Chunk{c(0, 10, "a", 1), c(5, 10, "b", 2)}, "[a[0,5)@0 b[5,15)@0]"},
		{[]Chunk{c(5, 10, "b", 2), c(0, 10, "a", 1)}, "[a[0,5)@0 b[5,15)@0]"},
		{[]Chunk{c(0, 20, "a", 1), c(5, 5, "b", 2)}, "[a[0,5)@0 b[5,10)@0 a[10,20)@10]"},
		{[]Chunk{c(5, 5, "b", 2), c(0, 20, "a", 3)}, "[a[0,20)@0]"},
		{[]Chunk{c(0, 10, "a", 1), c(0, 10, "b", 1)}, "[b[0,10)@0]"}, // tie: later wins
		{[]Chunk{c(0, 5, "a", 1), c(10, 5, "b", 1)}, "[a[0,5)@0 b[10,15)@0]"},
		{[]Chunk{c(0, 5, "a", 1), c(5, 5, "b", 1)}, "[a[0,5)@0 b[5,10)@0]"},
		{[]Chunk{c(0, 0, "z", 9), c(0, 5, "a", 1)}, "[a[0,5)@0]"},
		{[]Chunk{c(0, 30, "a", 1), c(10, 10, "b", 3), c(5, 20, "c", 2)}, "[a[0,5)@0 c[5,10)@0 b[10,20)@0 c[20,25)@15 a[25,30)@25]"},
	} {
		var got []string
		for _, iv := range VisibleIntervals(tc.in) {
			got = append(got, fmt.Sprintf("%s[%d,%d)@%d", iv.FileID, iv.Start, iv.Stop, iv.ChunkOffset))
		}
		if s := fmt.Sprint(got); s != tc.want && !(len(got) == 0 && tc.want == "[]") {
			t.Errorf("%v: got %s want %s", tc.in, s, tc.want)
		}
	}
}

// TestVisibleIntervalsRandom compares with a byte map: each byte shows the
// newest chunk covering it.
func TestVisibleIntervalsRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for iter := 0; iter < 2000; iter++ {
		n := rng.Intn(12)
		var cs []Chunk
		for i := 0; i < n; i++ {
			cs = append(cs, Chunk{Offset: int64(rng.Intn(60)), Size: int64(rng.Intn(25)),
				FileID: fmt.Sprint(i), ModifiedNs: int64(rng.Intn(5))})
		}
		const L = 100
		want := make([]int, L) // index+1 of the visible chunk, 0 = hole
		for b := 0; b < L; b++ {
			best := -1
			for i, c := range cs {
				if int64(b) >= c.Offset && int64(b) < c.Offset+c.Size {
					if best < 0 || c.ModifiedNs > cs[best].ModifiedNs || c.ModifiedNs == cs[best].ModifiedNs {
						best = i
					}
				}
			}
			want[b] = best + 1
		}
		got := make([]int, L)
		ivs := VisibleIntervals(cs)
		for k, iv := range ivs {
			if iv.Start >= iv.Stop || (k > 0 && ivs[k-1].Stop > iv.Start) {
				t.Fatalf("bad interval order %+v", ivs)
			}
			if k > 0 && ivs[k-1].Stop == iv.Start && ivs[k-1].Index == iv.Index {
				t.Fatalf("unmerged %+v", ivs)
			}
			c := cs[iv.Index]
			if iv.ChunkOffset != iv.Start-c.Offset || iv.FileID != c.FileID {
				t.Fatalf("interval %+v of chunk %+v", iv, c)
			}
			for b := iv.Start; b < iv.Stop; b++ {
				got[b] = iv.Index + 1
			}
		}
		for b := 0; b < L; b++ {
			if got[b] != want[b] {
				t.Fatalf("chunks %+v: byte %d shows %d want %d (%+v)", cs, b, got[b]-1, want[b]-1, ivs)
			}
		}
		// compactChunks keeps exactly the chunks that show somewhere.
		kept, dropped := compactChunks(cs)
		shown := map[string]bool{}
		for _, w := range want {
			if w > 0 {
				shown[cs[w-1].FileID] = true
			}
		}
		if len(kept) != len(shown) || len(kept)+len(dropped) != len(cs) {
			t.Fatalf("compact: kept %d shown %d dropped %d", len(kept), len(shown), len(dropped))
		}
		for _, c := range kept {
			if !shown[c.FileID] {
				t.Fatalf("kept hidden chunk %+v", c)
			}
		}
	}
}
