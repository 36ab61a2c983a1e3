-- Indexes for the HTTP API: the queue listing's default order (store::queue::list), so a
-- page is an index walk rather than a sort of the whole queue.
CREATE INDEX idx_queue_rank ON queue_items(score DESC, priority DESC, queued_at, id);
