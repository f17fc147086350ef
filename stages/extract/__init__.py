"""Stage one: decode clips, estimate 2D poses, build joint-to-patch mask grids."""
