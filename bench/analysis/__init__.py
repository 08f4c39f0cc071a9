"""Reading results back: BD figures, plots, reports, the leaderboard, the drift gate, FiftyOne."""
