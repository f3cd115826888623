// Package needle defines Kelp's on-disk and wire formats for the blob store:
// file ids, needles (the records of a volume's .dat file), the 16-byte .idx
// entries, the volume superblock, TTLs and replica placements. It owns the
// byte layout and nothing else: no I/O beyond encoding into and decoding from
// byte slices, no locking, stdlib only. Everything here is safe for
// concurrent use because nothing here holds state.
//
// All integers are big-endian.
//
// # File id
//
// A file id names one blob: "<volume id>,<key><cookie>", e.g. "3,01637037d6".
// The volume id is decimal (uint32). Key (uint64) and cookie (uint32) are
// written as the hex of their 12 big-endian bytes with the key's leading zero
// bytes dropped (at least one is kept: key 0 is "00"), so the last 8 hex
// digits are always the cookie and there are always more than 8. A suffix
// "_N" (decimal) adds N to the key: an assign with count=3 returns one fid
// and the caller may also use fid_1 and fid_2.
//
// # Volume .dat file
//
//	superblock (8 bytes)
//	  0  version            uint8   (currently 1)
//	  1  replica placement  uint8   (x*100 + y*10 + z of the "xyz" string)
//	  2  ttl                2 bytes (count uint8, unit uint8; 0,0 = none)
//	  4  compact revision   uint16  (bumped by every vacuum)
//	  6  reserved           uint16  (zero)
//	needle records, each starting at a multiple of 8
//
// # Needle record
//
//	header (16 bytes)
//	  0  cookie   uint32
//	  4  id       uint64  (the file key)
//	  12 size     uint32  (length of the body; 0 for a deletion record)
//	body (size bytes)
//	  data size   uint32
//	  data        data size bytes
//	  flags       uint8   (FlagHasName, FlagHasMime, FlagHasLastModified, FlagHasTTL, FlagIsManifest)
//	  name size   uint8  + name      (if FlagHasName)
//	  mime size   uint8  + mime      (if FlagHasMime)
//	  last mod    5 bytes, unix seconds (if FlagHasLastModified)
//	  ttl         2 bytes            (if FlagHasTTL)
//	checksum      uint32  CRC-32C (Castagnoli) of header and body
//	append at     uint64  unix nanoseconds when the record was appended
//	padding       zero bytes up to the next multiple of 8
//
// A record's total length is RecordSize(size). A torn write at the tail of a
// .dat file shows as a record that is cut short or whose checksum does not
// match; volume loading cuts such a tail off instead of serving it.
//
// # Index .idx file
//
// Append-only 16-byte entries, one per write or delete, in .dat order:
//
//	0  id      uint64
//	8  offset  uint32  (record offset in .dat divided by 8; .dat may reach 32 GiB)
//	12 size    uint32  (the record's body size; TombstoneSize marks a delete)
//
// Replaying the entries in order gives the needle map: the last entry for an
// id wins, and a tombstone removes it.
package needle
