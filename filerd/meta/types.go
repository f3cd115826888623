package meta

import (
	"context"
	"log/slog"
	"time"
)

// Inode numbers an inode. RootInode is the root directory, created on the
// first Open of an empty store. 0 is never a valid inode.
type Inode uint64

// RootInode is the inode of the root directory.
const RootInode Inode = 1

// File type bits and permission bits of Attr.Mode, with the values of
// POSIX (and Linux), defined here so the package is OS-independent.
const (
	S_IFMT   uint32 = 0o170000 // mask of the type bits
	S_IFSOCK uint32 = 0o140000
	S_IFLNK  uint32 = 0o120000
	S_IFREG  uint32 = 0o100000
	S_IFBLK  uint32 = 0o060000
	S_IFDIR  uint32 = 0o040000
	S_IFCHR  uint32 = 0o020000
	S_IFIFO  uint32 = 0o010000
	S_ISUID  uint32 = 0o004000
	S_ISGID  uint32 = 0o002000
	S_ISVTX  uint32 = 0o001000
	// ModePerm masks the permission bits including setuid, setgid, sticky.
	ModePerm uint32 = 0o7777
)

// Type is the file type of a directory entry: Attr.Mode's type bits
// shifted right by 12 (the DT_* values of Linux).
type Type uint8

// TypeOf returns the Type of a mode.
func TypeOf(mode uint32) Type { return Type((mode & S_IFMT) >> 12) }

// Mode returns the type bits of t.
func (t Type) Mode() uint32 { return uint32(t) << 12 }

// Attr holds an inode's POSIX attributes.
type Attr struct {
	Inode Inode
	// Mode is the type bits (S_IFREG...) and the permission bits.
	Mode     uint32
	Uid, Gid uint32
	// Size in bytes; for a symlink the length of Target.
	Size uint64
	// Nlink counts the names of the inode; a directory has 2 + its subdirectories.
	Nlink uint32
	// Atime, Mtime, Ctime, Crtime in nanoseconds since the Unix epoch.
	Atime, Mtime, Ctime, Crtime int64
	// Rdev is the device number of a character or block device.
	Rdev uint32
	// Target is a symlink's target.
	Target string
	// Generation is bumped by every change of the inode (attributes,
	// content, links); a cache can compare it.
	Generation uint64
	// Parent and Name are one name of the inode (a directory's only one):
	// the one that reconstructs its path for events.
	Parent Inode
	Name   string
}

// IsDir reports whether the attributes are a directory's.
func (a *Attr) IsDir() bool { return a.Mode&S_IFMT == S_IFDIR }

// IsRegular reports whether the attributes are a regular file's.
func (a *Attr) IsRegular() bool { return a.Mode&S_IFMT == S_IFREG }

// Entry is one directory entry.
type Entry struct {
	Name  string
	Inode Inode
	Type  Type
}

// Chunk is one immutable blob of a file's content: Size bytes at Offset,
// stored as FileID, written at ModifiedNs (newer chunks hide older ones where
// they overlap).
//
// A manifest chunk (IsManifest) stands for a run of chunks folded into a
// manifest blob (see manifest.go): FileID is that blob, [Offset,
// Offset+Size) the span of the chunks it lists (cut by a later truncate)
// and ModifiedNs the newest of theirs.
type Chunk struct {
	Offset     int64
	Size       int64
	FileID     string
	ModifiedNs int64
	ETag       string
	IsManifest bool
}

// EventKind says what an Event did.
type EventKind uint8

// Event kinds.
const (
	EventCreate EventKind = 1 // NewPath/NewEntry came into being (create, mkdir, symlink, link)
	EventUpdate EventKind = 2 // NewEntry's attributes or content changed
	EventDelete EventKind = 3 // OldPath (OldEntry) went away
	EventRename EventKind = 4 // OldPath moved to NewPath (replacing what was there)
)

func (k EventKind) String() string {
	switch k {
	case EventCreate:
		return "create"
	case EventUpdate:
		return "update"
	case EventDelete:
		return "delete"
	case EventRename:
		return "rename"
	}
	return "unknown"
}

// EntryState is an inode as an event carries it: enough for filer.sync to
// recreate it.
type EntryState struct {
	Attr   Attr
	Chunks []Chunk
	Inline []byte
	Xattrs map[string][]byte
}

// Event is one change-log record.
type Event struct {
	Kind EventKind
	// TsNs is the event's timestamp, strictly increasing over the log.
	TsNs             int64
	OldPath, NewPath string
	// OldParent and NewParent are the directories holding OldPath and
	// NewPath: 0 where the path is empty, and for "/".
	OldParent, NewParent Inode
	// OldEntry is the state before (delete, rename); NewEntry after
	// (create, update, rename). For a rename with Exchange set, OldEntry is
	// the inode that moved from OldPath to NewPath and NewEntry the one
	// that moved from NewPath to OldPath. A delete's OldEntry (and a
	// rename's Replaced) carries attributes only, no content or xattrs.
	OldEntry, NewEntry *EntryState
	// Exchange marks a RENAME_EXCHANGE.
	Exchange bool
	// Replaced is the inode a rename replaced at NewPath, if any.
	Replaced *EntryState
	// FreedChunks are the chunks this change queued for deletion
	// (manifest chunks as they are: their inner chunks go with them).
	FreedChunks []Chunk
	// Signatures are the ids of the filers this change passed through.
	Signatures []int32
	// LinkedPath, on a create that added a name to an existing file (a
	// hard link), is the name the file's attributes record, so that a
	// replica that does not know which of its files holds this one's
	// content can find it and link rather than copy.
	LinkedPath string
}

// Config configures a Namespace.
type Config struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Clock returns the time in ns since the epoch; nil means time.Now.
	Clock func() int64
	// InlineLimit is the largest content stored inline in the inode
	// (bytes); 0 disables inline content.
	InlineLimit int
	// MaxXattrSize is the largest xattr value (bytes).
	MaxXattrSize int
	// MaxNameLen is the longest name (bytes).
	MaxNameLen int
	// Signature is this filer's id, added to every event it creates.
	Signature int32
	// InodeBatch is how many inode numbers one allocator transaction reserves.
	InodeBatch uint64

	// Manifests reads manifest blobs. It is needed once a file holds
	// manifest chunks: an append that may repeat a chunk folded into a
	// manifest reads that manifest (see AppendChunks), and Check expands
	// manifests with it. Nil means no manifest can be read (such appends
	// fail with ErrInvalid; Check stays shallow).
	Manifests ManifestReader
	// FoldThreshold is the number of data (non-manifest) chunks above
	// which a file should have chunks folded into a manifest: a commit
	// that leaves a file with more calls FoldHint. 0 never calls it.
	FoldThreshold int
	// FoldHint, if set, is called (after the commit, outside any
	// transaction) with each inode a committed change left with more than
	// FoldThreshold data chunks. It must not block.
	FoldHint func(Inode)
	// KeepOrphans: Open leaves the open-unlinked inodes of the previous
	// run for a later FreeOrphans, instead of freeing them.
	KeepOrphans bool
}

// ManifestReader returns the chunks a manifest blob lists, in their
// order. Manifest blobs are immutable, so an implementation may cache by
// file id; callers never modify the returned slice.
type ManifestReader interface {
	ReadManifest(ctx context.Context, fid string) ([]Chunk, error)
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Clock:        func() int64 { return time.Now().UnixNano() },
		InlineLimit:  4096,
		MaxXattrSize: 64 << 10,
		MaxNameLen:   255,
		InodeBatch:   1024,
	}
}

// SetAttrRequest says which attributes SetAttr changes; nil fields stay.
type SetAttrRequest struct {
	Mode *uint32 // permission bits only; type bits are ignored
	Uid  *uint32
	Gid  *uint32
	Size *uint64
	// Atime/Mtime set a time; AtimeNow/MtimeNow set it to now.
	Atime, Mtime       *int64
	AtimeNow, MtimeNow bool
	// Ctime, if set, overrides the ctime (filer.sync replays it).
	Ctime *int64
}

// RenameFlags modify Rename.
type RenameFlags uint32

// Rename flags (RENAME_NOREPLACE and RENAME_EXCHANGE).
const (
	RenameNoReplace RenameFlags = 1 << 0
	RenameExchange  RenameFlags = 1 << 1
)

// XattrFlags modify SetXattr.
type XattrFlags uint32

// Xattr flags (XATTR_CREATE and XATTR_REPLACE).
const (
	XattrCreate  XattrFlags = 1
	XattrReplace XattrFlags = 2
)

// PendingDeletion is one chunk waiting for deletion from the volume servers.
//
// For a manifest chunk the deletion covers its blob and every chunk it
// lists except those whose file id is in Keep: delete the listed chunks
// first and the manifest blob last, so a manifest blob that is gone means
// its chunks are gone too. Keep names the blobs the file still used when
// the manifest was dropped (see freeDropped).
type PendingDeletion struct {
	Key   []byte
	Chunk Chunk
	Keep  []string
}
