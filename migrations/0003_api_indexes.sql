-- Indexes for the HTTP API: the queue listing's default order, and audit listings.
CREATE INDEX idx_queue_rank ON queue_items(priority DESC, score DESC, queued_at, id);
CREATE INDEX idx_audit_actor ON audit_log(actor, id);
