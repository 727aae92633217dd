//! Aligned text columns. Widths count characters without ANSI styles, so a
//! coloured cell lines up with plain ones.

/// Rows of cells printed with two spaces between columns; the last column is
/// not padded.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|cell| cell.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The header only, nothing else.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// The lines, each with `indent` before it.
    pub fn render(&self, indent: &str) -> Vec<String> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(column))
                    .map(|cell| visible_width(cell))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        self.rows
            .iter()
            .map(|row| {
                let mut line = indent.to_string();
                for (column, cell) in row.iter().enumerate() {
                    line.push_str(cell);
                    if column + 1 < row.len() {
                        let pad = widths[column] - visible_width(cell) + 2;
                        line.push_str(&" ".repeat(pad));
                    }
                }
                line
            })
            .collect()
    }
}

/// The width of `text` on screen: characters outside ANSI escape sequences.
pub fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_ignoring_colour() {
        let mut table = Table::new(&["ID", "STATE"]);
        table.row(vec!["web".into(), "\x1b[32mrunning\x1b[0m".into()]);
        table.row(vec!["worker#1".into(), "stopped".into()]);
        assert_eq!(
            table.render(""),
            vec![
                "ID        STATE",
                "web       \x1b[32mrunning\x1b[0m",
                "worker#1  stopped"
            ]
        );
    }
}
