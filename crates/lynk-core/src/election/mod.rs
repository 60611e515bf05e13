//! Leader election on the lock engine (campaign, leadership, observers).
