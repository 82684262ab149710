package pgcdc

import "context"

type loader struct{}

func (l *loader) close(ctx context.Context) {}

func (c *cursor) startLoad(ctx context.Context, exists bool) error { return nil }

func (c *cursor) resumeLoad(ctx context.Context, si slotInfo, start Pos) error { return nil }

func (c *cursor) runLoad(ctx context.Context) error { return nil }
