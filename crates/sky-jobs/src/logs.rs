//! Kept logs: a task's run log and the controller's per-job event lines under the jobs home.
