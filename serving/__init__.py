"""The HTTP service: Tracking, Profile, Recommendations, Regulations and Destinations APIs."""
