import subprocess
import sys
import unittest
from pathlib import Path

from shop.models import Cart


class CartTests(unittest.TestCase):
    def setUp(self):
        self.cart = Cart()
        self.cart.add("Crêpe", 350, 2)

    def test_total(self):
        self.assertEqual(self.cart.total(), 700)

    def test_adding_again_sums_quantities(self):
        self.cart.add("Crêpe", 350)
        self.assertEqual(self.cart.lines["Crêpe"], (350, 3))

    def test_remove(self):
        self.cart.remove("Crêpe")
        self.assertEqual(self.cart.total(), 0)

    def test_bad_quantity(self):
        with self.assertRaises(ValueError):
            self.cart.add("Galette", 900, 0)


class ManageTests(unittest.TestCase):
    def test_demo_command(self):
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(
            [sys.executable, "manage.py", "demo"], cwd=root, capture_output=True, text=True
        )
        self.assertEqual(out.stdout, "700\n", out.stderr)
