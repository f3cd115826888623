package storage

import "errors"

// Sentinel errors. Every error the package returns wraps one of these (or an
// *os.PathError / needle error naming the file) so callers can map them with
// errors.Is; the message names the volume and the file involved.
var (
	// ErrVolumeNotFound: no volume with that id on this store.
	ErrVolumeNotFound = errors.New("storage: volume not found")
	// ErrVolumeExists: AllocateVolume of an id that is already present.
	ErrVolumeExists = errors.New("storage: volume already exists")
	// ErrNotFound: the needle is absent, deleted or past its TTL.
	ErrNotFound = errors.New("storage: needle not found")
	// ErrCookieMismatch: the needle exists but the caller's cookie is wrong.
	// It is a separate sentinel from ErrNotFound; HTTP maps both to 404.
	ErrCookieMismatch = errors.New("storage: cookie mismatch")
	// ErrReadOnly: the volume is marked read-only (or was made read-only by
	// an fsync failure) and rejects writes and deletes.
	ErrReadOnly = errors.New("storage: volume is read-only")
	// ErrVolumeFull: the write would take the .dat past VolumeSizeLimit.
	ErrVolumeFull = errors.New("storage: volume is full")
	// ErrNoFreeSlot: every location holds its maximum number of volumes.
	ErrNoFreeSlot = errors.New("storage: no free volume slot")
	// ErrCorrupt: a stored record fails its CRC or does not decode. No bytes
	// are returned with it.
	ErrCorrupt = errors.New("storage: corrupt needle")
	// ErrBadNeedle: the needle cannot be stored in this volume as it is:
	// on a TTL volume, its own TTL is longer than the volume's, or its
	// LastModified is more than a minute ahead of the store's clock (either
	// would let it outlive the volume, which is dropped whole). Callers
	// should treat it as a client error.
	ErrBadNeedle = errors.New("storage: needle does not fit the volume")
	// ErrClosed: the store (or the volume, being deleted) is closed.
	ErrClosed = errors.New("storage: store closed")
)
