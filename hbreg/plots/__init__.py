"""Figures: those of a fit run, and the helpers every command's figures share."""
