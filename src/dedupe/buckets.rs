//! Items ordered by bucket, a stable counting sort: what every hash table of the near-pair searches
//! is built from (multi-index hashing's chunk tables for codes and for window pHashes, the sampled
//! search's tables).

/// Where each bucket starts among the items ordered by bucket: one more entry than buckets, bucket
/// v holds `starts[v]..starts[v + 1]`. `bucket_of(i)` is item i's bucket, below `buckets`.
pub(super) fn bucket_starts(buckets: usize, items: usize, bucket_of: impl Fn(usize) -> usize) -> Vec<u32> {
    let mut starts = vec![0u32; buckets + 1];
    for i in 0..items {
        starts[bucket_of(i) + 1] += 1;
    }
    for v in 0..buckets {
        starts[v + 1] += starts[v];
    }
    starts
}

/// [`bucket_starts`] and the item positions in bucket order (within a bucket, in input order).
pub(super) fn bucket_order(buckets: usize, items: usize, bucket_of: impl Fn(usize) -> usize) -> (Vec<u32>, Vec<u32>) {
    let starts = bucket_starts(buckets, items, &bucket_of);
    let mut fill = starts.clone();
    let mut ids = vec![0u32; items];
    for i in 0..items {
        let slot = &mut fill[bucket_of(i)];
        ids[*slot as usize] = i as u32;
        *slot += 1;
    }
    (starts, ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_in_bucket_order_and_input_order_within_a_bucket() {
        let of = [2usize, 0, 2, 1, 0, 2];
        let (starts, ids) = bucket_order(4, of.len(), |i| of[i]);
        assert_eq!(starts, vec![0, 2, 3, 6, 6]);
        assert_eq!(ids, vec![1, 4, 3, 0, 2, 5]);
        assert_eq!(bucket_starts(4, of.len(), |i| of[i]), starts);
    }
}
