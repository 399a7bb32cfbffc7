#!/bin/sh
echo "this file is data and must not be executable"
