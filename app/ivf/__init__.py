"""Vector kernels: batch validation, block packing, distances and top-k. numpy only."""
