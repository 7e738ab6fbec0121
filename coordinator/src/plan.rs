//! The planner: pure code that turns a job into its proving tasks.
//!
//! A job proves steps `0..steps`. Leaf tasks prove spans of consecutive
//! steps (one step each in batched mode); in succinct mode aggregation tasks
//! follow the tree of [`zkaudit_circuits::aggregate::plan`]: each node with
//! two or more children is a task depending on its children's tasks, and a
//! single child is carried up (no task). An audit job is one task per chunk
//! and, for counting claims, a combine task depending on every chunk. A task
//! is ready when every task it depends on is done.

use serde::{Deserialize, Serialize};
use zkaudit_circuits::aggregate::{leaf_spans, plan};
use zkaudit_circuits::shape::StepShape;

/// Certificate mode of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobMode {
    /// Every step proof, one accumulated pairing.
    Batched,
    /// One recursively aggregated proof.
    Succinct,
}

/// What a task proves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Steps `first..=last` in one proof.
    Leaf {
        /// First step.
        first: u64,
        /// Last step.
        last: u64,
    },
    /// Aggregation of the proofs of `children` (task indices, in step order).
    Aggregate {
        /// Tree level (1 for aggregations of leaves).
        level: u32,
        /// Child tasks.
        children: Vec<u32>,
    },
    /// Chunk `chunk` of an audit.
    AuditChunk {
        /// Chunk index.
        chunk: u32,
    },
    /// The combine proof of an audit over its chunk tasks (in order).
    AuditCombine {
        /// The chunk tasks.
        chunks: Vec<u32>,
    },
}

impl TaskKind {
    /// A short name (status, metrics).
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Leaf { .. } => "leaf",
            TaskKind::Aggregate { .. } => "aggregate",
            TaskKind::AuditChunk { .. } => "audit-chunk",
            TaskKind::AuditCombine { .. } => "audit-combine",
        }
    }
}

/// Prover memory measured for a `k = 20` aggregation (keygen and proof of
/// two leaves, BENCHMARKS.md): 16 GiB; it doubles with each `k`.
pub const AGG_MEMORY_K20: u64 = 16 << 30;

/// Prover memory a task needs, estimated from its circuit: a leaf from the
/// step shape at its span and `k` ([`StepShape::memory_at`]), an aggregation
/// from its size (`agg_k`) until its key is derived (then from the key's
/// layout: [`crate::keyprep::KeyPrep::task_memory`]); audit tasks are small
/// and not limited (0).
pub fn task_memory(shape: &StepShape, agg_k: u32, kind: &TaskKind) -> u64 {
    match kind {
        TaskKind::Leaf { first, last } => {
            let span = (last.saturating_sub(*first) + 1) as usize;
            shape.with_span(span).memory_at(shape.k).1
        }
        TaskKind::Aggregate { .. } if agg_k >= 20 => AGG_MEMORY_K20 << (agg_k - 20).min(8),
        TaskKind::Aggregate { .. } => AGG_MEMORY_K20 >> (20 - agg_k).min(8),
        TaskKind::AuditChunk { .. } | TaskKind::AuditCombine { .. } => 0,
    }
}

/// The tasks of a job, leaves (or audit chunks) first; the root is the last
/// task in succinct mode (and of an audit with a combine task); otherwise
/// every task in order makes the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPlan {
    /// Tasks by index.
    pub tasks: Vec<TaskKind>,
    /// Index of the root task (succinct mode).
    pub root: Option<u32>,
}

impl JobPlan {
    /// The tasks `index` depends on.
    pub fn deps(&self, index: u32) -> &[u32] {
        match self.tasks.get(index as usize) {
            Some(TaskKind::Aggregate { children, .. }) => children,
            Some(TaskKind::AuditCombine { chunks }) => chunks,
            _ => &[],
        }
    }

    /// The steps `first..=last` task `index` proves: a leaf's own, an
    /// aggregation's from its first child's first step to its last child's
    /// last. `None` for audit tasks and indices outside the plan.
    pub fn range(&self, index: u32) -> Option<(u64, u64)> {
        match self.tasks.get(index as usize)? {
            TaskKind::Leaf { first, last } => Some((*first, *last)),
            TaskKind::Aggregate { children, .. } => {
                // Children precede their parent: no cycle can recurse.
                let (&a, &b) = (children.first()?, children.last()?);
                if a >= index || b >= index {
                    return None;
                }
                Some((self.range(a)?.0, self.range(b)?.1))
            }
            TaskKind::AuditChunk { .. } | TaskKind::AuditCombine { .. } => None,
        }
    }

    /// Number of leaf tasks.
    pub fn leaves(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| matches!(t, TaskKind::Leaf { .. }))
            .count()
    }
}

/// Plans a job of `steps` steps (at least 1) with `span` steps per leaf
/// (forced to 1 in batched mode).
pub fn plan_job(steps: u64, mode: JobMode, span: usize) -> JobPlan {
    let span = match mode {
        JobMode::Batched => 1,
        JobMode::Succinct => span.max(1),
    };
    let mut tasks = Vec::new();
    let mut first = 0u64;
    for len in leaf_spans(steps.max(1) as usize, span) {
        tasks.push(TaskKind::Leaf {
            first,
            last: first + len as u64 - 1,
        });
        first += len as u64;
    }
    if mode == JobMode::Batched {
        return JobPlan { tasks, root: None };
    }
    let p = plan(tasks.len());
    let mut level: Vec<u32> = (0..tasks.len() as u32).collect();
    for l in 0..p.sizes.len() - 1 {
        let mut next = Vec::with_capacity(p.sizes[l + 1]);
        for j in 0..p.sizes[l + 1] {
            let kids: Vec<u32> = level[p.children(l, j)].to_vec();
            if kids.len() == 1 {
                next.push(kids[0]);
            } else {
                next.push(tasks.len() as u32);
                tasks.push(TaskKind::Aggregate {
                    level: l as u32 + 1,
                    children: kids,
                });
            }
        }
        level = next;
    }
    JobPlan {
        root: level.first().copied(),
        tasks,
    }
}

/// Plans an audit of `chunks` chunks (at least 1), with a combine task
/// over all of them when `combine`.
pub fn plan_audit(chunks: u32, combine: bool) -> JobPlan {
    let mut tasks: Vec<TaskKind> = (0..chunks.max(1))
        .map(|chunk| TaskKind::AuditChunk { chunk })
        .collect();
    let root = combine.then(|| {
        tasks.push(TaskKind::AuditCombine {
            chunks: (0..chunks.max(1)).collect(),
        });
        tasks.len() as u32 - 1
    });
    JobPlan { tasks, root }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audits_are_chunks_then_one_combine() {
        let p = plan_audit(3, true);
        assert_eq!(p.tasks.len(), 4);
        assert_eq!(p.root, Some(3));
        assert_eq!(p.deps(3), &[0, 1, 2]);
        assert!(p.deps(0).is_empty());
        assert_eq!(p.tasks[2], TaskKind::AuditChunk { chunk: 2 });
        // Without a combine step every chunk is part of the result.
        let q = plan_audit(2, false);
        assert_eq!(q.tasks.len(), 2);
        assert_eq!(q.root, None);
    }

    #[test]
    fn batched_jobs_are_one_leaf_per_step() {
        let p = plan_job(5, JobMode::Batched, 32);
        assert_eq!(p.tasks.len(), 5);
        assert_eq!(p.root, None);
        assert_eq!(p.tasks[3], TaskKind::Leaf { first: 3, last: 3 });
    }

    #[test]
    fn tasks_know_the_steps_they_prove() {
        let p = plan_job(179, JobMode::Succinct, 32);
        assert_eq!(p.range(0), Some((0, 31)));
        assert_eq!(p.range(5), Some((160, 178)));
        let root = p.root.unwrap();
        assert_eq!(p.range(root), Some((0, 178)));
        assert_eq!(p.range(root + 1), None);
        assert_eq!(plan_audit(3, true).range(0), None);
    }

    #[test]
    fn succinct_jobs_follow_the_aggregation_tree() {
        // 179 steps in spans of 32: 6 leaves, 5 aggregations over 3 levels.
        let p = plan_job(179, JobMode::Succinct, 32);
        assert_eq!(p.leaves(), 6);
        assert_eq!(p.tasks.len(), 11);
        assert_eq!(
            p.tasks[5],
            TaskKind::Leaf {
                first: 160,
                last: 178
            }
        );
        assert_eq!(p.root, Some(10));
        assert_eq!(p.deps(6), &[0, 1]);
        // Level 2 aggregates the first two level-1 nodes; the third is carried up.
        assert_eq!(p.deps(9), &[6, 7]);
        assert_eq!(p.deps(10), &[9, 8]);
        // Every dependency comes before its task, and every task but the root is used once.
        let mut used = vec![0; p.tasks.len()];
        for i in 0..p.tasks.len() as u32 {
            for &d in p.deps(i) {
                assert!(d < i);
                used[d as usize] += 1;
            }
        }
        for (i, &u) in used.iter().enumerate() {
            assert_eq!(u, usize::from(Some(i as u32) != p.root), "task {i}");
        }
        // One leaf is its own root.
        let one = plan_job(3, JobMode::Succinct, 8);
        assert_eq!(one.tasks.len(), 1);
        assert_eq!(one.root, Some(0));
    }
}
