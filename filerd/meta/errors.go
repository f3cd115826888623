package meta

import "errors"

// Sentinel errors. The mount and the gRPC layer translate them to errno and
// status codes; nothing in this package knows those.
var (
	// ErrNotFound: no such entry or inode (ENOENT).
	ErrNotFound = errors.New("meta: not found")
	// ErrExists: the name or xattr already exists (EEXIST).
	ErrExists = errors.New("meta: already exists")
	// ErrNotEmpty: the directory has entries (ENOTEMPTY).
	ErrNotEmpty = errors.New("meta: directory not empty")
	// ErrNotDir: a directory was expected (ENOTDIR).
	ErrNotDir = errors.New("meta: not a directory")
	// ErrIsDir: the operation does not apply to a directory (EISDIR).
	ErrIsDir = errors.New("meta: is a directory")
	// ErrNameTooLong: a name is longer than Config.MaxNameLen (ENAMETOOLONG).
	ErrNameTooLong = errors.New("meta: name too long")
	// ErrInvalid: a bad argument, a bad name, or a directory renamed into
	// its own subtree (EINVAL).
	ErrInvalid = errors.New("meta: invalid argument")
	// ErrLoop: too many symbolic links while resolving a path (ELOOP).
	ErrLoop = errors.New("meta: too many levels of symbolic links")
	// ErrNoAttr: the xattr does not exist (ENODATA).
	ErrNoAttr = errors.New("meta: no such attribute")
	// ErrXattrTooBig: the xattr value is over Config.MaxXattrSize (E2BIG).
	ErrXattrTooBig = errors.New("meta: attribute too big")
	// ErrPermission: the operation is not permitted, e.g. a hard link to a
	// directory (EPERM).
	ErrPermission = errors.New("meta: operation not permitted")
	// ErrCrossDevice: reserved for operations across namespaces (EXDEV).
	ErrCrossDevice = errors.New("meta: cross-device link")
	// ErrStale: the inode no longer exists (ESTALE).
	ErrStale = errors.New("meta: stale inode")
	// ErrCorrupt: a stored record cannot be decoded (EIO).
	ErrCorrupt = errors.New("meta: corrupt record")
	// ErrLogTrimmed: the requested change-log range is older than retention.
	ErrLogTrimmed = errors.New("meta: change log trimmed")
)
