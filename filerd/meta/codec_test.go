package meta

import (
	"bytes"
	"reflect"
	"testing"
)

// TestEventCodec round-trips events, and reads an event written before
// version 3 (a rename's state written twice).
func TestEventCodec(t *testing.T) {
	state := func(ino Inode, inline string) *EntryState {
		return &EntryState{
			Attr:   Attr{Inode: ino, Mode: S_IFREG | 0o644, Nlink: 1, Size: uint64(len(inline)), Mtime: 5},
			Chunks: []Chunk{{Offset: 0, Size: 4096, FileID: "3,01637037d6", ModifiedNs: 9, ETag: "e"}},
			Inline: []byte(inline),
			Xattrs: map[string][]byte{"user.a": []byte("1")},
		}
	}
	moved := state(10, "content")
	rename := &Event{Kind: EventRename, TsNs: 42, OldPath: "/a", NewPath: "/b", OldParent: 1, NewParent: 1,
		OldEntry: moved, NewEntry: moved, Replaced: &EntryState{Attr: Attr{Inode: 11}}, Signatures: []int32{7}}
	exchange := &Event{Kind: EventRename, TsNs: 43, OldPath: "/a", NewPath: "/b", OldParent: 1, NewParent: 2,
		OldEntry: state(10, "x"), NewEntry: state(12, "y"), Exchange: true}
	del := &Event{Kind: EventDelete, TsNs: 44, OldPath: "/c", OldParent: 1, OldEntry: &EntryState{Attr: Attr{Inode: 13}},
		FreedChunks: []Chunk{{FileID: "4,02", Size: 1}}}
	link := &Event{Kind: EventCreate, TsNs: 45, NewPath: "/d/second", NewParent: 3, NewEntry: state(14, "z"), LinkedPath: "/first"}
	for _, ev := range []*Event{rename, exchange, del, link} {
		got, err := decodeEvent(encodeEvent(ev))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, ev) {
			t.Errorf("round trip of %+v gave %+v", ev, got)
		}
	}
	// A link's LinkedPath trails the event: a decoder that predates it
	// reads the rest (it ignores what follows), and one that knows it
	// reads an event without it as before.
	withLink, without := encodeEvent(link), encodeEvent(&Event{Kind: EventCreate, TsNs: 45, NewPath: "/d/second", NewParent: 3, NewEntry: state(14, "z")})
	if withLink[0] != eventVersion || !bytes.HasPrefix(withLink, without) {
		t.Errorf("a link event is not the plain create with its linked path after it")
	}
	// A plain rename's state is written once, and comes back shared.
	b := encodeEvent(rename)
	twice := *rename
	copied := *moved
	twice.NewEntry = &copied
	old := encodeEvent(&twice)
	if len(b) >= len(old)-len("content") {
		t.Errorf("a rename encodes to %d bytes, with its state twice %d", len(b), len(old))
	}
	if got, _ := decodeEvent(b); got.NewEntry != got.OldEntry {
		t.Errorf("a rename's decoded states are not one")
	}
	// Version 2 wrote the state twice; nothing else differs.
	old[0] = 2
	got, err := decodeEvent(old)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.NewEntry, moved) || !reflect.DeepEqual(got.OldEntry, moved) || got.NewPath != "/b" || got.Replaced.Attr.Inode != 11 {
		t.Errorf("a version-2 rename decoded as %+v", got)
	}
}
