// Package integration holds tests that run Kelp for real: whole clusters in
// one process (through integration/cluster) and the kelp binary as separate
// processes, broken on purpose (restarts, kill -9). Nothing imports it.
package integration
