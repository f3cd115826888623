// Package topology is the master's model of the cluster: data centers, racks
// and volume servers (data nodes), the volumes each server holds, the volume
// layouts keyed by (collection, replication, ttl) with their writable
// volumes, replica placement for volume growth, and the sequencer that hands
// out file keys and volume ids that are never reissued after a restart.
//
// It is pure: it depends on needle and the standard library only and knows
// nothing of gRPC, HTTP or api/*. The daemon (package masterd) translates
// heartbeats into NodeReports, calls Expire on its own clock, performs the
// volume allocations that PickNodes plans and registers the results with
// RegisterVolume. Time comes in as arguments; nothing here starts a
// goroutine.
//
// Writability: a volume is writable when all CopyCount replicas are held by
// live (registered) servers, no replica is read-only and no replica has
// reached the volume size limit. A server that is removed or expired takes
// its replicas with it: the volume stays readable from the remaining
// replicas (Lookup) but is no longer assigned.
//
// Concurrency: a Topology and a Sequencer are each safe for concurrent use;
// each guards its state with its own mutex. Values returned (Location,
// Snapshot, ...) are copies the caller owns.
package topology
