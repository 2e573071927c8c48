"""The storage engine: encrypted blocks and where each vector is, item payloads,
search views, the write tail and its fold, compaction, and the locks, retries
and CPU offloading the write and read paths share. The use cases in
app.services drive it; it never imports them."""
