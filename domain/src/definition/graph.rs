//! Cycles in `needs` graphs.

/// Every cycle in a directed graph given as adjacency lists, each once, as its nodes in edge
/// order starting from its lowest-numbered node. Node numbers follow the file's order, so the
/// first cycle reported is the one that starts earliest in the file.
pub(super) fn cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        node: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        found: &mut Vec<Vec<usize>>,
    ) {
        marks[node] = Mark::OnPath;
        path.push(node);
        for &next in &edges[node] {
            match marks[next] {
                Mark::New => visit(next, edges, marks, path, found),
                Mark::OnPath => {
                    let start = path.iter().position(|&n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    let lowest = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, n)| **n)
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(lowest);
                    let mut members = cycle.clone();
                    members.sort_unstable();
                    let seen = found.iter().any(|c| {
                        let mut m = c.clone();
                        m.sort_unstable();
                        m == members
                    });
                    if !seen {
                        found.push(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
    }

    let mut marks = vec![Mark::New; edges.len()];
    let mut found = Vec::new();
    for node in 0..edges.len() {
        if marks[node] == Mark::New {
            visit(node, edges, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_without_back_edges_has_no_cycles() {
        assert!(cycles(&[vec![], vec![0], vec![0, 1]]).is_empty());
    }

    #[test]
    fn cycles_are_reported_once_from_their_first_node() {
        // 0 → 1 → 2 → 0, and 3 → 3.
        let edges = [vec![1], vec![2], vec![0], vec![3]];
        assert_eq!(cycles(&edges), vec![vec![0, 1, 2], vec![3]]);
        let edges = [vec![], vec![2], vec![1]];
        assert_eq!(cycles(&edges), vec![vec![1, 2]]);
    }
}
