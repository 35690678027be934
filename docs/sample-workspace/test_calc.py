"""The calculator's tests: `python3 -m unittest -q`."""

import unittest

import calc


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(2, 3), 5)

    def test_subtract(self):
        self.assertEqual(calc.subtract(5, 3), 2)

    def test_multiply(self):
        self.assertEqual(calc.multiply(4, 3), 12)

    def test_mean(self):
        self.assertEqual(calc.mean([1, 2, 3, 4]), 2.5)

    def test_mean_of_nothing_is_an_error(self):
        with self.assertRaises(ValueError):
            calc.mean([])

    def test_clamp(self):
        self.assertEqual(calc.clamp(5, 0, 3), 3)
        self.assertEqual(calc.clamp(-1, 0, 3), 0)
        self.assertEqual(calc.clamp(2, 0, 3), 2)


if __name__ == "__main__":
    unittest.main()
