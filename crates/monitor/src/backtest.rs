//! Backtest.
