//! The order queue: jobs claimed with leases, highest priority first.
