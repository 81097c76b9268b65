"""The paper studies, written as library users: `limit` (the mean-field limit in n),
`localisation` (atoms of the perceptron energy, arXiv 2601.21366) and `temperature`
(critical-beta laws, arXiv 2605.12697). The CLI and examples/ call them."""
