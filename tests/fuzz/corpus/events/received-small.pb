
ucafé