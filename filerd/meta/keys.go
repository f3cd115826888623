package meta

import "encoding/binary"

// Key prefixes (see doc.go).
const (
	pfxInode   = 'i'
	pfxDirent  = 'd'
	pfxBackref = 'p'
	pfxXattr   = 'x'
	pfxData    = 'c'
	pfxOrphan  = 'o'
	pfxGC      = 'g'
	pfxLog     = 'l'
	pfxKV      = 'k'
	pfxMeta    = 'm'
	pfxFold    = 'f'
)

func inoKey(p byte, ino Inode) []byte {
	k := make([]byte, 9)
	k[0] = p
	binary.BigEndian.PutUint64(k[1:], uint64(ino))
	return k
}

func inoNameKey(p byte, ino Inode, name string) []byte {
	k := make([]byte, 9, 9+len(name))
	k[0] = p
	binary.BigEndian.PutUint64(k[1:], uint64(ino))
	return append(k, name...)
}

func attrKey(ino Inode) []byte              { return inoKey(pfxInode, ino) }
func dataKey(ino Inode) []byte              { return inoKey(pfxData, ino) }
func orphanKey(ino Inode) []byte            { return inoKey(pfxOrphan, ino) }
func direntKey(p Inode, name string) []byte { return inoNameKey(pfxDirent, p, name) }
func dirPrefix(p Inode) []byte              { return inoKey(pfxDirent, p) }
func xattrKey(ino Inode, name string) []byte {
	return inoNameKey(pfxXattr, ino, name)
}
func xattrPrefix(ino Inode) []byte { return inoKey(pfxXattr, ino) }

func backrefPrefix(ino Inode) []byte { return inoKey(pfxBackref, ino) }
func backrefKey(ino, parent Inode, name string) []byte {
	k := make([]byte, 17, 17+len(name))
	k[0] = pfxBackref
	binary.BigEndian.PutUint64(k[1:], uint64(ino))
	binary.BigEndian.PutUint64(k[9:], uint64(parent))
	return append(k, name...)
}

func logKey(ts int64) []byte {
	k := make([]byte, 9)
	k[0] = pfxLog
	binary.BigEndian.PutUint64(k[1:], uint64(ts))
	return k
}

func gcKey(ts int64, seq uint32) []byte {
	k := make([]byte, 13)
	k[0] = pfxGC
	binary.BigEndian.PutUint64(k[1:], uint64(ts))
	binary.BigEndian.PutUint32(k[9:], seq)
	return k
}

func kvKey(key string) []byte { return append([]byte{pfxKV}, key...) }

func metaKey(name string) []byte { return append([]byte{pfxMeta}, name...) }

func encodeDirent(ino Inode, t Type) []byte {
	v := make([]byte, 9)
	binary.BigEndian.PutUint64(v, uint64(ino))
	v[8] = byte(t)
	return v
}

func decodeDirent(v []byte) (Inode, Type, error) {
	if len(v) != 9 {
		return 0, 0, ErrCorrupt
	}
	return Inode(binary.BigEndian.Uint64(v)), Type(v[8]), nil
}
