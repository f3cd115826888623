package masterd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/kelpfs/kelp/masterd/topology"
	"github.com/kelpfs/kelp/needle"
)

// httpHandler routes the SeaweedFS-shaped HTTP API.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/dir/assign", s.methods(s.handleAssign, http.MethodGet, http.MethodPost, http.MethodPut))
	mux.HandleFunc("/dir/lookup", s.methods(s.handleLookup, http.MethodGet, http.MethodPost))
	mux.HandleFunc("/dir/status", s.methods(s.handleDirStatus, http.MethodGet))
	mux.HandleFunc("/vol/grow", s.methods(s.handleGrow, http.MethodGet, http.MethodPost))
	mux.HandleFunc("/vol/vacuum", s.methods(s.handleVacuum, http.MethodGet, http.MethodPost))
	mux.HandleFunc("/cluster/status", s.methods(s.handleClusterStatus, http.MethodGet))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no such endpoint " + r.URL.Path})
	})
	return mux
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// httpStatus translates an operation error into an HTTP status once.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, topology.ErrBadCount):
		return http.StatusBadRequest
	case errors.Is(err, topology.ErrVolumeNotFound):
		return http.StatusNotFound
	case errors.Is(err, topology.ErrNoFreeSlots), errors.Is(err, topology.ErrUnsatisfiable),
		errors.Is(err, topology.ErrNoWritableVolume), errors.Is(err, ErrAllocate), errors.Is(err, ErrClosed),
		errors.Is(err, topology.ErrExhausted):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := httpStatus(err)
	if code >= 500 {
		s.log.Warn("http request failed", "path", r.URL.Path, "query", r.URL.RawQuery, "status", code, "err", err)
	}
	writeJSON(w, code, errorBody{Error: err.Error()})
}

// methods wraps h so other methods get 405, and parses the form (query
// and urlencoded body) so bad encodings get 400.
func (s *Server) methods(h http.HandlerFunc, allowed ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok := false
		for _, m := range allowed {
			ok = ok || r.Method == m
		}
		if !ok {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{
				Error: fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")),
			})
			return
		}
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad request parameters: " + err.Error()})
			return
		}
		h(w, r)
	}
}

// uintParam parses an optional non-negative integer parameter; absent or
// empty is 0.
func uintParam(r *http.Request, name string) (uint64, error) {
	v := r.Form.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, invalid("%s %q: want a non-negative integer", name, v)
	}
	return n, nil
}

type assignBody struct {
	Count     uint64 `json:"count"`
	Fid       string `json:"fid"`
	URL       string `json:"url"`
	PublicURL string `json:"publicUrl"`
}

func (s *Server) handleAssign(w http.ResponseWriter, r *http.Request) {
	count, err := uintParam(r, "count")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a, err := s.assign(r.Context(), assignRequest{
		Count:       count,
		Replication: r.Form.Get("replication"),
		Collection:  r.Form.Get("collection"),
		TTL:         r.Form.Get("ttl"),
		DataCenter:  r.Form.Get("dataCenter"),
		Rack:        r.Form.Get("rack"),
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, assignBody{Count: a.Count, Fid: a.FileID.String(), URL: a.Location.URL, PublicURL: a.Location.PublicURL})
}

type locationBody struct {
	URL       string `json:"url"`
	PublicURL string `json:"publicUrl"`
}

type lookupBody struct {
	VolumeID  string         `json:"volumeId"`
	Locations []locationBody `json:"locations,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// handleLookup accepts volumeId as a volume id ("3") or a file id
// ("3,01637037d6").
func (s *Server) handleLookup(w http.ResponseWriter, r *http.Request) {
	raw := r.Form.Get("volumeId")
	if raw == "" {
		writeJSON(w, http.StatusBadRequest, lookupBody{Error: "volumeId is required"})
		return
	}
	var vid uint32
	var err error
	if strings.Contains(raw, ",") {
		var fid needle.FileID
		fid, err = needle.ParseFileID(raw)
		vid = fid.VolumeID
	} else {
		vid, err = needle.ParseVolumeID(raw)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, lookupBody{VolumeID: raw, Error: "volumeId: " + err.Error()})
		return
	}
	body := lookupBody{VolumeID: strconv.FormatUint(uint64(vid), 10)}
	locs, err := s.topo.Lookup(vid)
	if err != nil {
		body.Error = err.Error()
		writeJSON(w, httpStatus(err), body)
		return
	}
	for _, l := range locs {
		body.Locations = append(body.Locations, locationBody{URL: l.URL, PublicURL: l.PublicURL})
	}
	writeJSON(w, http.StatusOK, body)
}

type growBody struct {
	Count     int      `json:"count"`
	VolumeIDs []uint32 `json:"volumeIds"`
}

func (s *Server) handleGrow(w http.ResponseWriter, r *http.Request) {
	count, err := uintParam(r, "count")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ids, err := s.growVolumes(r.Context(), count, r.Form.Get("replication"), r.Form.Get("collection"),
		r.Form.Get("ttl"), r.Form.Get("dataCenter"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ids == nil {
		ids = []uint32{}
	}
	writeJSON(w, http.StatusOK, growBody{Count: len(ids), VolumeIDs: ids})
}

type vacuumBody struct {
	Compacted []uint32 `json:"compacted"`
}

func (s *Server) handleVacuum(w http.ResponseWriter, r *http.Request) {
	var threshold float64
	if v := r.Form.Get("garbageThreshold"); v != "" {
		t, err := strconv.ParseFloat(v, 64)
		if err != nil || !(t > 0 && t <= 1) {
			s.writeError(w, r, invalid("garbageThreshold %q: want a number in (0, 1]", v))
			return
		}
		threshold = t
	}
	var vid uint32
	if v := r.Form.Get("volumeId"); v != "" {
		id, err := needle.ParseVolumeID(v)
		if err != nil || id == 0 {
			s.writeError(w, r, invalid("volumeId %q: want a positive volume id", v))
			return
		}
		vid = id
	}
	ids, err := s.vacuum(r.Context(), threshold, vid)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, vacuumBody{Compacted: ids})
}

type clusterStatusBody struct {
	IsLeader bool     `json:"IsLeader"`
	Leader   string   `json:"Leader"`
	Peers    []string `json:"Peers"`
}

func (s *Server) handleClusterStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, clusterStatusBody{IsLeader: true, Leader: s.leader(), Peers: []string{}})
}

// The /dir/status shapes follow SeaweedFS's field names.
type (
	dirStatusBody struct {
		Version  string       `json:"Version"`
		Topology topologyBody `json:"Topology"`
	}
	topologyBody struct {
		Max             int              `json:"Max"`
		Free            int              `json:"Free"`
		VolumeSizeLimit uint64           `json:"VolumeSizeLimit"`
		DataCenters     []dataCenterBody `json:"DataCenters"`
		Layouts         []layoutBody     `json:"Layouts"`
	}
	dataCenterBody struct {
		ID    string     `json:"Id"`
		Max   int        `json:"Max"`
		Free  int        `json:"Free"`
		Racks []rackBody `json:"Racks"`
	}
	rackBody struct {
		ID        string     `json:"Id"`
		Max       int        `json:"Max"`
		Free      int        `json:"Free"`
		DataNodes []nodeBody `json:"DataNodes"`
	}
	nodeBody struct {
		URL         string       `json:"Url"`
		PublicURL   string       `json:"PublicUrl"`
		GRPCAddress string       `json:"GrpcAddress"`
		Max         int          `json:"Max"`
		Free        int          `json:"Free"`
		Volumes     int          `json:"Volumes"`
		VolumeInfos []volumeBody `json:"VolumeInfos"`
	}
	volumeBody struct {
		ID           uint32 `json:"Id"`
		Size         uint64 `json:"Size"`
		Collection   string `json:"Collection"`
		Replication  string `json:"ReplicaPlacement"`
		TTL          string `json:"Ttl"`
		FileCount    uint64 `json:"FileCount"`
		DeleteCount  uint64 `json:"DeleteCount"`
		DeletedBytes uint64 `json:"DeletedByteCount"`
		ReadOnly     bool   `json:"ReadOnly"`
	}
	layoutBody struct {
		Collection  string   `json:"collection"`
		Replication string   `json:"replication"`
		TTL         string   `json:"ttl"`
		Volumes     []uint32 `json:"volumes"`
		Writables   []uint32 `json:"writables"`
	}
)

func (s *Server) handleDirStatus(w http.ResponseWriter, r *http.Request) {
	snap := s.topo.Snapshot()
	t := topologyBody{Max: snap.MaxVolumes, Free: snap.FreeSlots, VolumeSizeLimit: snap.VolumeSizeLimit,
		DataCenters: []dataCenterBody{}, Layouts: []layoutBody{}}
	for _, dc := range snap.DataCenters {
		d := dataCenterBody{ID: dc.ID, Max: dc.MaxVolumes, Free: dc.FreeSlots, Racks: []rackBody{}}
		for _, rk := range dc.Racks {
			rb := rackBody{ID: rk.ID, Max: rk.MaxVolumes, Free: rk.FreeSlots, DataNodes: []nodeBody{}}
			for _, n := range rk.Nodes {
				nb := nodeBody{URL: n.URL, PublicURL: n.PublicURL, GRPCAddress: n.GRPCAddress, Max: n.MaxVolumes,
					Free: n.FreeSlots, Volumes: len(n.Volumes), VolumeInfos: []volumeBody{}}
				for _, v := range n.Volumes {
					nb.VolumeInfos = append(nb.VolumeInfos, volumeBody{
						ID: v.ID, Size: v.Size, Collection: v.Collection, Replication: v.Replication.String(),
						TTL: v.TTL.String(), FileCount: v.FileCount, DeleteCount: v.DeleteCount,
						DeletedBytes: v.DeletedBytes, ReadOnly: v.ReadOnly,
					})
				}
				rb.DataNodes = append(rb.DataNodes, nb)
			}
			d.Racks = append(d.Racks, rb)
		}
		t.DataCenters = append(t.DataCenters, d)
	}
	for _, l := range snap.Layouts {
		lb := layoutBody{Collection: l.Key.Collection, Replication: l.Key.Replication.String(), TTL: l.Key.TTL.String(),
			Volumes: l.Volumes, Writables: l.Writable}
		if lb.Writables == nil {
			lb.Writables = []uint32{}
		}
		t.Layouts = append(t.Layouts, lb)
	}
	writeJSON(w, http.StatusOK, dirStatusBody{Version: "kelp", Topology: t})
}
