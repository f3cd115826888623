package badger

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// slogLogger adapts a *slog.Logger to badger.Logger. Badger is chatty at
// info level (table counts at open, every compaction), so info goes to
// Debug; errors and warnings keep their level.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Errorf(f string, args ...any)   { s.log(slog.LevelError, f, args) }
func (s slogLogger) Warningf(f string, args ...any) { s.log(slog.LevelWarn, f, args) }
func (s slogLogger) Infof(f string, args ...any)    { s.log(slog.LevelDebug, f, args) }
func (s slogLogger) Debugf(f string, args ...any)   { s.log(slog.LevelDebug, f, args) }

func (s slogLogger) log(level slog.Level, f string, args []any) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	s.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(f, args...)))
}
