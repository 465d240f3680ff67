package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Stream limits for GET /api/events.
const (
	// maxStreams bounds the open streams, each a goroutine and a buffer.
	maxStreams = 64
	// pingEvery keeps idle streams from being cut by proxies on the way.
	pingEvery = 15 * time.Second
	// writeTimeout drops a client that stops reading.
	writeTimeout = 10 * time.Second
)

// events serves the feed as server-sent events (text/event-stream): first
// the recent events after the client's Last-Event-ID header (or ?after=N;
// neither: all the ring holds), then each new one as it happens. Each event
// is one "id:" line and one "data:" line holding an Event as JSON.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.feed == nil {
		http.Error(w, "no event feed in this process", http.StatusNotFound)
		return
	}
	if s.feed.subscribers() >= maxStreams {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many event streams open", http.StatusServiceUnavailable)
		return
	}
	after := lastEventID(r)
	backlog, sub, ok := s.feed.subscribe(after)
	if !ok {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.feed.unsubscribe(sub)

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	write := func(chunk string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := fmt.Fprint(w, chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// retry: how soon EventSource reconnects after the stream ends.
	if !write("retry: 1000\n\n" + encodeEvents(backlog)) {
		return
	}
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-sub.ch:
			if !ok {
				return
			}
			// Send what else is queued in the same write.
			batch := []Event{e}
			for more := true; more; {
				select {
				case e, ok := <-sub.ch:
					if !ok {
						write(encodeEvents(batch))
						return
					}
					batch = append(batch, e)
				default:
					more = false
				}
			}
			if !write(encodeEvents(batch)) {
				return
			}
		case <-ping.C:
			if !write(": ping\n\n") {
				return
			}
		}
	}
}

func encodeEvents(events []Event) string {
	var b []byte
	for _, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			continue // plain data: cannot happen
		}
		b = fmt.Appendf(b, "id: %d\ndata: %s\n\n", e.ID, data)
	}
	return string(b)
}

// lastEventID is the ID after which the client wants events: the
// Last-Event-ID header EventSource sends on reconnect, else ?after=.
func lastEventID(r *http.Request) uint64 {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("after")
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}
