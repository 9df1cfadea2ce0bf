//! The last sessions, for `/scheduler/history-list` and
//! `/scheduler/history-detail/{session}` (climc `scheduler-history-show`).

use std::collections::VecDeque;
use std::sync::Arc;

use cloudpods_apis::scheduler::{HistoryDetail, HistoryItem, HistoryList};

pub struct Entry {
    pub item: HistoryItem,
    pub detail: HistoryDetail,
}

pub struct History {
    cap: usize,
    entries: VecDeque<Arc<Entry>>,
}

impl History {
    pub fn new(cap: usize) -> History {
        History {
            cap: cap.max(1),
            entries: VecDeque::new(),
        }
    }

    pub fn push(&mut self, e: Entry) {
        if self.entries.len() >= self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(Arc::new(e));
    }

    /// Newest first.
    pub fn list(&self, offset: usize, limit: usize) -> HistoryList {
        HistoryList {
            data: self
                .entries
                .iter()
                .rev()
                .skip(offset)
                .take(limit)
                .map(|e| e.item.clone())
                .collect(),
            total: self.entries.len() as i64,
            offset: offset as i64,
            limit: limit as i64,
        }
    }

    /// The latest entry of a session.
    pub fn get(&self, session: &str) -> Option<Arc<Entry>> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.item.session_id == session)
            .cloned()
    }
}
