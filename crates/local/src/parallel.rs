//! Running blocking work on several items at once, for I/O whose waits should overlap (fsyncs
//! share the disk's cache flushes instead of queueing one behind the other).

/// Run `work` on every item, the first on this thread and each other on a scoped thread of its
/// own, and answer one result per item, in order. A panic on another thread becomes that item's
/// `Err`; a panic on this thread propagates.
pub(crate) fn each_at_once<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> R + Sync,
) -> Vec<std::thread::Result<R>> {
    match items {
        [] => Vec::new(),
        [one] => vec![Ok(work(one))],
        [first, rest @ ..] => std::thread::scope(|scope| {
            let work = &work;
            let others: Vec<_> = rest
                .iter()
                .map(|item| scope.spawn(move || work(item)))
                .collect();
            let mut results = vec![Ok(work(first))];
            results.extend(others.into_iter().map(|handle| handle.join()));
            results
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::each_at_once;

    #[test]
    fn answers_every_item_in_order() {
        let items: Vec<u32> = (0..7).collect();
        let doubled: Vec<u32> = each_at_once(&items, |n| n * 2)
            .into_iter()
            .map(|r| r.expect("no work panics"))
            .collect();
        assert_eq!(doubled, vec![0, 2, 4, 6, 8, 10, 12]);
        assert!(each_at_once(&[] as &[u32], |n| *n).is_empty());
    }

    #[test]
    fn a_panic_on_another_thread_is_that_items_error() {
        let results = each_at_once(&[1, 2, 3], |&n| {
            assert!(n != 3, "three fails");
            n
        });
        assert_eq!(results.len(), 3);
        assert_eq!(*results[0].as_ref().expect("first item works"), 1);
        assert_eq!(*results[1].as_ref().expect("second item works"), 2);
        assert!(results[2].is_err());
    }
}
