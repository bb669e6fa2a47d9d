//! Heap memory laid out like a shared region: for tests, Miri, benchmarks, and rings between
//! threads of one process.

use std::{
    alloc::{Layout, alloc_zeroed, dealloc},
    ptr::NonNull,
    sync::Arc,
};

use bytemuck::Pod;

use crate::{
    BroadcastProducer, BroadcastReader, BroadcastRing, KeepAlive, MpmcRing, RecordConsumer,
    RecordProducer, RecordRing, SpscRing, StampedConsumer, StampedProducer, StampedRing,
    header::REGION_ALIGN,
    mpmc::{Receiver, Sender},
    spsc::{Consumer, Producer},
};

/// Zeroed, 128-byte aligned heap memory.
#[derive(Debug)]
pub struct HeapRegion {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the allocation is plain memory owned by this value; the rings inside it synchronise
// all access through atomics.
unsafe impl Send for HeapRegion {}
// SAFETY: as above; `&HeapRegion` only hands out the raw pointer.
unsafe impl Sync for HeapRegion {}

impl HeapRegion {
    /// Allocates `len` zeroed bytes (at least one).
    ///
    /// # Panics
    /// If the allocation fails or `len` is absurd.
    pub fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len.max(1), REGION_ALIGN).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        Self {
            ptr: NonNull::new(ptr).expect("allocation failed"),
            layout,
        }
    }

    /// Start of the memory.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Whether the region is empty (never: at least one byte is allocated).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// An SPSC ring on the heap, both ends.
    pub fn spsc<T: Pod + Send>(capacity: u64) -> (Producer<T>, Consumer<T>) {
        Self::spsc_at(capacity, 0)
    }

    /// An SPSC ring on the heap whose positions start at `start`.
    ///
    /// # Panics
    /// If the capacity is invalid.
    pub fn spsc_at<T: Pod + Send>(capacity: u64, start: u64) -> (Producer<T>, Consumer<T>) {
        let r = Arc::new(Self::new(SpscRing::<T>::required_size(capacity)));
        let alive = |_| true;
        // SAFETY: the region is kept alive by both handles (keep_alive) and used only by them.
        unsafe {
            SpscRing::<T>::init(r.as_ptr(), r.len(), capacity, start).expect("valid capacity");
            let p = SpscRing::<T>::producer(r.as_ptr(), r.len(), 1, &alive).expect("fresh ring");
            let c = SpscRing::<T>::consumer(r.as_ptr(), r.len(), 2, &alive).expect("fresh ring");
            let keep: KeepAlive = r;
            (p.keep_alive(keep.clone()), c.keep_alive(keep))
        }
    }

    /// A stamped SPSC ring on the heap, both ends.
    pub fn stamped<T: Pod + Send>(capacity: u64) -> (StampedProducer<T>, StampedConsumer<T>) {
        Self::stamped_at(capacity, 0)
    }

    /// A stamped SPSC ring on the heap whose positions start at `start`.
    ///
    /// # Panics
    /// If the capacity is invalid.
    pub fn stamped_at<T: Pod + Send>(
        capacity: u64,
        start: u64,
    ) -> (StampedProducer<T>, StampedConsumer<T>) {
        let r = Arc::new(Self::new(StampedRing::<T>::required_size(capacity)));
        let alive = |_| true;
        // SAFETY: as in `spsc_at`.
        unsafe {
            StampedRing::<T>::init(r.as_ptr(), r.len(), capacity, start).expect("valid capacity");
            let p = StampedRing::<T>::producer(r.as_ptr(), r.len(), 1, &alive).expect("fresh");
            let c = StampedRing::<T>::consumer(r.as_ptr(), r.len(), 2, &alive).expect("fresh");
            let keep: KeepAlive = r;
            (p.keep_alive(keep.clone()), c.keep_alive(keep))
        }
    }

    /// A record ring of `capacity` bytes on the heap; clone the producer for more.
    pub fn record(capacity: u64) -> (RecordProducer, RecordConsumer) {
        Self::record_at(capacity, 0)
    }

    /// A record ring on the heap whose positions start at `start` (a multiple of 8).
    ///
    /// # Panics
    /// If the capacity or start is invalid.
    pub fn record_at(capacity: u64, start: u64) -> (RecordProducer, RecordConsumer) {
        let r = Arc::new(Self::new(RecordRing::required_size(capacity)));
        // SAFETY: as in `spsc_at`.
        unsafe {
            RecordRing::init(r.as_ptr(), r.len(), capacity, start).expect("valid capacity");
            let p = RecordRing::producer(r.as_ptr(), r.len(), 0, &|_| true).expect("fresh ring");
            let c = RecordRing::consumer(r.as_ptr(), r.len(), 2, &|_| true).expect("fresh");
            let keep: KeepAlive = r;
            (p.keep_alive(keep.clone()), c.keep_alive(keep))
        }
    }

    /// A broadcast ring of `capacity` slots of `slot_bytes` on the heap; clone the reader for
    /// more readers.
    pub fn broadcast(capacity: u64, slot_bytes: usize) -> (BroadcastProducer, BroadcastReader) {
        Self::broadcast_at(capacity, slot_bytes, 0)
    }

    /// A broadcast ring on the heap whose positions start at `start`.
    ///
    /// # Panics
    /// If the capacity or slot size is invalid.
    pub fn broadcast_at(
        capacity: u64,
        slot_bytes: usize,
        start: u64,
    ) -> (BroadcastProducer, BroadcastReader) {
        let r = Arc::new(Self::new(BroadcastRing::required_size(
            capacity, slot_bytes,
        )));
        // SAFETY: as in `spsc_at`.
        unsafe {
            BroadcastRing::init(r.as_ptr(), r.len(), capacity, slot_bytes, start)
                .expect("valid capacity and slot size");
            let p = BroadcastRing::producer(r.as_ptr(), r.len(), 1, &|_| true).expect("fresh");
            let c = BroadcastRing::reader(r.as_ptr(), r.len()).expect("fresh ring");
            let keep: KeepAlive = r;
            (p.keep_alive(keep.clone()), c.keep_alive(keep))
        }
    }

    /// A run-time-layout SPSC ring of `layout` elements on the heap, positions from `start`.
    ///
    /// # Panics
    /// If the capacity is invalid.
    pub fn dyn_spsc_at(
        layout: crate::ElemLayout,
        capacity: u64,
        start: u64,
    ) -> (crate::DynProducer, crate::DynConsumer) {
        use crate::DynSpscRing as R;
        let r = Arc::new(Self::new(R::required_size(layout, capacity)));
        let alive = |_| true;
        // SAFETY: as in `spsc_at`.
        unsafe {
            R::init(r.as_ptr(), r.len(), layout, capacity, start).expect("valid capacity");
            let p = R::producer(r.as_ptr(), r.len(), layout, 1, &alive).expect("fresh ring");
            let c = R::consumer(r.as_ptr(), r.len(), layout, 2, &alive).expect("fresh ring");
            let keep: KeepAlive = r;
            (p.keep_alive(keep.clone()), c.keep_alive(keep))
        }
    }

    /// A run-time-layout MPMC ring of `layout` elements on the heap, positions from `start`.
    ///
    /// # Panics
    /// If the capacity is invalid.
    pub fn dyn_mpmc_at(
        layout: crate::ElemLayout,
        capacity: u64,
        start: u64,
    ) -> (crate::DynSender, crate::DynReceiver) {
        use crate::DynMpmcRing as R;
        let r = Arc::new(Self::new(R::required_size(layout, capacity)));
        // SAFETY: as in `spsc_at`.
        unsafe {
            R::init(r.as_ptr(), r.len(), layout, capacity, start).expect("valid capacity");
            let tx = R::sender(r.as_ptr(), r.len(), layout).expect("fresh ring");
            let rx = R::receiver(r.as_ptr(), r.len(), layout).expect("fresh ring");
            let keep: KeepAlive = r;
            (tx.keep_alive(keep.clone()), rx.keep_alive(keep))
        }
    }

    /// An MPMC ring on the heap; clone the ends for more producers and consumers.
    pub fn mpmc<T: Pod + Send>(capacity: u64) -> (Sender<T>, Receiver<T>) {
        Self::mpmc_at(capacity, 0)
    }

    /// An MPMC ring on the heap whose positions start at `start`.
    ///
    /// # Panics
    /// If the capacity is invalid.
    pub fn mpmc_at<T: Pod + Send>(capacity: u64, start: u64) -> (Sender<T>, Receiver<T>) {
        let r = Arc::new(Self::new(MpmcRing::<T>::required_size(capacity)));
        // SAFETY: as in `spsc_at`.
        unsafe {
            MpmcRing::<T>::init(r.as_ptr(), r.len(), capacity, start).expect("valid capacity");
            let tx = MpmcRing::<T>::sender(r.as_ptr(), r.len()).expect("fresh ring");
            let rx = MpmcRing::<T>::receiver(r.as_ptr(), r.len()).expect("fresh ring");
            let keep: KeepAlive = r;
            (tx.keep_alive(keep.clone()), rx.keep_alive(keep))
        }
    }
}

impl HeapRegion {
    /// A latest-value region of `slots` slots for values of up to `value_size` bytes on the
    /// heap: a writer and a reader (clone either for more).
    ///
    /// # Panics
    /// If the slot count or value size is invalid.
    pub fn latest(slots: u64, value_size: usize) -> (crate::LatestWriter, crate::LatestReader) {
        use crate::LatestRing as R;
        let r = Arc::new(Self::new(R::required_size(slots, value_size)));
        // SAFETY: as in `spsc_at`.
        unsafe {
            R::init(r.as_ptr(), r.len(), slots, value_size).expect("valid slots and value size");
            let w = R::writer(r.as_ptr(), r.len()).expect("fresh region");
            let rd = R::reader(r.as_ptr(), r.len()).expect("fresh region");
            let keep: KeepAlive = r;
            (w.keep_alive(keep.clone()), rd.keep_alive(keep))
        }
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
