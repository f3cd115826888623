package filerd

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/filerd/meta"
)

// feedBatch is how many events one log read takes before they are sent,
// so a slow subscriber never holds a store snapshot open.
const feedBatch = 256

// feedQueue is how many events wait between the log reader and the
// stream sender of one subscription.
const feedQueue = 64

// subscribe streams the change log to one subscriber: every event with
// TsNs > req.SinceNs up to the namespace's watermark, then, as the
// watermark advances, each later range (last sent, watermark]. Since
// history and live events are one loop over the watermark, there is no gap
// and no duplicate between them. Events outside req.PathPrefix and events
// already signed by req.ClientSignature are skipped. With
// req.MarkCaughtUp, a caught_up marker follows the first pass. A
// subscription with a client signature also sends progress reports when a
// lock grant for that signature asks (feed_progress.go).
//
// It ends with FailedPrecondition if the requested range has been trimmed,
// with ResourceExhausted if one event waits longer than SubscriberTimeout
// to be sent, and with nil when the server closes or the client goes away.
func (s *Server) subscribe(ctx context.Context, req *filerpb.SubscribeMetadataRequest, send func(*filerpb.MetadataEvent) error) error {
	prefix := normPrefix(req.PathPrefix)
	s.log.Debug("subscriber connected", "client", req.ClientName, "since_ns", req.SinceNs, "prefix", prefix)

	// The sender runs apart so a stuck Send can be timed out: the handler
	// returns, gRPC ends the stream, and the blocked Send returns.
	queue := make(chan *filerpb.MetadataEvent, feedQueue)
	sendErr := make(chan error, 1)
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	if !s.goOwned(func() {
		for {
			select {
			case ev := <-queue:
				if err := send(ev); err != nil {
					sendErr <- err
					return
				}
			case <-sendCtx.Done():
				return
			}
		}
	}) {
		return statusf(codes.Unavailable, "filer closing")
	}

	var progress *feedProgress // progress reports lock grants ask for (feed_progress.go)
	var progressWake <-chan struct{}
	if req.ClientSignature != 0 {
		var remove func()
		progress, remove = s.feeds.add(req.ClientSignature)
		defer remove()
		progressWake = progress.wake
	}

	timer := time.NewTimer(s.cfg.SubscriberTimeout)
	defer timer.Stop()
	var reported int64 // the timestamp of the last message queued
	queued := func(ts int64) {
		reported = ts
		if progress != nil {
			progress.reported.Store(ts)
		}
	}
	enqueue := func(ev *filerpb.MetadataEvent) error {
		select {
		case queue <- ev:
			queued(ev.TsNs)
			return nil
		default:
		}
		timer.Reset(s.cfg.SubscriberTimeout)
		select {
		case queue <- ev:
			queued(ev.TsNs)
			return nil
		case <-timer.C:
			s.log.Warn("subscriber too slow, ending its stream", "client", req.ClientName, "ts_ns", ev.TsNs)
			return statusf(codes.ResourceExhausted, "subscriber too slow: event %d not taken within %v; resubscribe from the last timestamp received",
				ev.TsNs, s.cfg.SubscriberTimeout)
		case err := <-sendErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-s.baseCtx.Done():
			return errClosing
		}
	}

	// A since past the watermark (a client clock ahead of this filer's)
	// starts at the watermark: every event after it is yet to commit,
	// and the client wants it whatever its timestamp.
	last := min(req.SinceNs, s.ns.Watermark())
	markPending := req.MarkCaughtUp // after the first pass, which covers the history
	batch := make([]meta.Event, 0, feedBatch)
	for {
		changed := s.ns.Changes() // before the watermark, so no advance is missed
		wm := s.ns.Watermark()
		for last < wm {
			batch = batch[:0]
			err := s.ns.ReadLog(ctx, last, wm, func(ev meta.Event) bool {
				batch = append(batch, ev)
				return len(batch) < feedBatch
			})
			if err != nil {
				return s.feedError(err, last)
			}
			if len(batch) == 0 {
				last = wm
				break
			}
			for i := range batch {
				ev := &batch[i]
				if wanted(ev, prefix, req.ClientSignature) {
					if err := enqueue(eventToPB(ev)); err != nil {
						return s.feedError(err, last)
					}
				}
				last = ev.TsNs
			}
			if len(batch) < feedBatch {
				last = wm
			}
		}
		if markPending {
			markPending = false
			// The watermark, not last: a subscription from past the
			// watermark (a client clock ahead of this filer's) would
			// otherwise be told a position later events may fall before.
			if err := enqueue(&filerpb.MetadataEvent{CaughtUp: true, TsNs: min(last, wm)}); err != nil {
				return s.feedError(err, last)
			}
		}
		if progress != nil && progress.due(min(last, wm), reported) {
			if err := enqueue(&filerpb.MetadataEvent{Progress: true, TsNs: min(last, wm)}); err != nil {
				return s.feedError(err, last)
			}
		}
		select {
		case <-changed:
		case <-progressWake:
		case err := <-sendErr:
			return s.feedError(err, last)
		case <-ctx.Done():
			return nil
		case <-s.baseCtx.Done():
			return nil
		}
	}
}

// errClosing ends a subscription when the server closes.
var errClosing = errors.New("filer closing")

// feedError turns what ended a subscription into its status: nil for a
// clean end (server closing, client gone), an explicit
// FailedPrecondition for a trimmed range.
func (s *Server) feedError(err error, last int64) error {
	switch {
	case errors.Is(err, errClosing), errors.Is(err, context.Canceled):
		return nil
	case errors.Is(err, meta.ErrLogTrimmed):
		hint := "a later since_ns, after resynchronising from the namespace itself"
		if c := s.trimCutoff.Load(); c > 0 {
			hint = "since_ns >= " + time.Unix(0, c).UTC().Format(time.RFC3339Nano) + " (" + strconv.FormatInt(c, 10) + "), after resynchronising from the namespace itself"
		}
		return statusf(codes.FailedPrecondition, "change log trimmed: events after %d are no longer kept (retention %v): %v; resubscribe from %s",
			last, s.cfg.LogRetention, err, hint)
	}
	return grpcError(err)
}

// normPrefix makes "" and "/" mean everything and drops a trailing slash.
func normPrefix(p string) string {
	p = strings.TrimRight(p, "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// under reports whether path is prefix or lies below it.
func under(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix) && len(path) > len(prefix) && path[len(prefix)] == '/'
}

// wanted applies a subscription's filters: an old or new path under the
// prefix, and not already signed by the subscriber.
func wanted(ev *meta.Event, prefix string, sig int32) bool {
	if sig != 0 && slices.Contains(ev.Signatures, sig) {
		return false
	}
	return (ev.OldPath != "" && under(ev.OldPath, prefix)) || (ev.NewPath != "" && under(ev.NewPath, prefix))
}

var kindToPB = map[meta.EventKind]filerpb.MetadataEvent_Kind{
	meta.EventCreate: filerpb.MetadataEvent_CREATE,
	meta.EventUpdate: filerpb.MetadataEvent_UPDATE,
	meta.EventDelete: filerpb.MetadataEvent_DELETE,
	meta.EventRename: filerpb.MetadataEvent_RENAME,
}

// eventToPB encodes a change-log event.
func eventToPB(ev *meta.Event) *filerpb.MetadataEvent {
	out := &filerpb.MetadataEvent{
		Kind:        kindToPB[ev.Kind],
		TsNs:        ev.TsNs,
		OldPath:     ev.OldPath,
		NewPath:     ev.NewPath,
		FreedChunks: chunksToPB(ev.FreedChunks),
		Signatures:  ev.Signatures,
		Exchange:    ev.Exchange,
		OldParent:   uint64(ev.OldParent),
		NewParent:   uint64(ev.NewParent),
		LinkedPath:  ev.LinkedPath,
	}
	// An entry's path is where it was before the event (old_entry,
	// replaced) or where it is after it (new_entry): after an exchange
	// new_entry, which came from new_path, sits at old_path.
	out.OldEntry = entryToPB(ev.OldEntry, ev.OldPath)
	newPath := ev.NewPath
	if ev.Exchange {
		newPath = ev.OldPath
	}
	out.NewEntry = entryToPB(ev.NewEntry, newPath)
	out.Replaced = entryToPB(ev.Replaced, ev.NewPath)
	return out
}

func entryToPB(e *meta.EntryState, path string) *filerpb.EntryState {
	if e == nil {
		return nil
	}
	return &filerpb.EntryState{Path: path, Attr: attrToPB(&e.Attr), Chunks: chunksToPB(e.Chunks), Inline: e.Inline,
		SymlinkTarget: e.Attr.Target, Xattrs: e.Xattrs}
}

// retentionLoop trims the change log to LogRetention, at start and then
// every tenth of the retention (at most hourly, at least every second).
func (s *Server) retentionLoop() {
	every := min(max(s.cfg.LogRetention/10, time.Second), time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cutoff := time.Now().Add(-s.cfg.LogRetention).UnixNano()
		if err := s.ns.TrimLog(s.baseCtx, cutoff); err != nil {
			if s.baseCtx.Err() != nil {
				return
			}
			s.log.Warn("trim change log", "err", err)
		} else {
			s.trimCutoff.Store(cutoff)
		}
		select {
		case <-t.C:
		case <-s.baseCtx.Done():
			return
		}
	}
}
