package storage

import (
	"fmt"
	"os"
	"path/filepath"
)

// location is one data directory and the volumes in it.
type location struct {
	dir        string
	maxVolumes int
	volumes    map[uint32]*volume // guarded by Store.mu
}

// free is the number of volumes the location can still take.
func (l *location) free() int { return l.maxVolumes - len(l.volumes) }

// prepareDir creates dir if missing and checks that files can be created in it.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("storage: volume directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".kelp-write-check-*")
	if err != nil {
		return fmt.Errorf("storage: volume directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("storage: volume directory %s: %w", dir, err)
	}
	return nil
}

// loadVolumes opens every volume in the location's directory. A volume that
// fails to load is logged and left on disk untouched; the others load.
func (l *location) loadVolumes(opts volumeOptions, taken func(id uint32) bool) error {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("storage: read volume directory %s: %w", l.dir, err)
	}
	for _, ent := range ents {
		if !ent.Type().IsRegular() {
			continue
		}
		collection, id, ok := parseVolumeFileName(ent.Name())
		if !ok {
			continue
		}
		if taken(id) {
			opts.log.Error("volume id found twice; not loading this copy", "volume", id, "file", filepath.Join(l.dir, ent.Name()))
			continue
		}
		v, err := openVolume(l.dir, collection, id, opts)
		if err != nil {
			opts.log.Error("cannot load volume; leaving its files untouched", "volume", id, "dir", l.dir, "err", err)
			continue
		}
		l.volumes[id] = v
	}
	return nil
}
